"""The prediction server's contract: a Pydantic model for every body it answers with, the request
body POST /predict takes, and which answers each path can give. FastAPI writes them into the
OpenAPI description (/openapi.json, shown at /docs), so a client generated from it knows the
errors as well as the answers; tests/test_server_contract.py holds the server to it.

The routes return plain dicts (the models describe them; they do not rebuild each answer), so
documenting the contract changed no answer by a byte.
"""

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from .preprocess import UPLOAD_FORMATS


class Guess(BaseModel):
    digit: int = Field(description="the class's index: the digit, for MNIST")
    label: str = Field(description="the class's name")
    probability: float = Field(ge=0, le=1)


class ClassMap(BaseModel):
    """Where the net found the predicted class (?explain=1): see explain in the docs."""

    model_config = ConfigDict(populate_by_name=True)

    class_: int = Field(alias="class", description="the predicted class's index (the answer's digit)")
    map: list[list[float]] = Field(description="its class activation map over the 28x28 image: 28 rows of 28")
    coarse: list[list[float]] = Field(
        description="the map as the net made it (3x3 improved, 2x2 seed), whose mean is the class's score"
    )
    scores: list[float] = Field(description="every class's score (logit); their softmax is the probabilities")


class Prediction(Guess):
    """One image's prediction: `mnist-cnn-predict --json`'s entry for a file, and the image."""

    file: str | None = Field(description="the uploaded file's name; null for a raw body")
    top: list[Guess] = Field(description="the likeliest classes, likeliest first (`top` of them)")
    notes: list[str] = Field(
        description="what the sender may not expect, e.g. an animated GIF's first frame read"
    )
    image: str = Field(
        pattern=r"^data:image/png;base64,", description="the 28x28 picture the net saw, as a PNG data URL"
    )
    explain: ClassMap | None = Field(None, description="only with ?explain=1")


class Health(BaseModel):
    status: str = Field(description='"ok" once the net is loaded')


class NetDescription(BaseModel):
    name: str = Field(description="the net's builder: seed or improved")
    weights: str = Field(description="the shipped weights' name, or the checkpoint's path")
    dataset: str
    parameters: int
    test_accuracy: float | None = Field(
        ge=0, le=1, description="the share of the test set it reads right, if known"
    )
    classes: list[str]


class Error(BaseModel):
    """Every error, whatever its status: one sentence, never a traceback."""

    error: str = Field(description="what was wrong, in one sentence")


def error_answers(statuses: dict[int, str]) -> dict[int | str, dict[str, Any]]:
    """FastAPI's `responses` for error statuses: each with the Error body and what it means."""
    answers: dict[int | str, dict[str, Any]] = {
        status: {"model": Error, "description": what} for status, what in statuses.items()
    }
    if 503 in answers:
        answers[503]["headers"] = {
            "Retry-After": {
                "description": "seconds to wait before trying again",
                "schema": {"type": "integer"},
            }
        }
    return answers


ANY_PATH_ERRORS = {405: "a method this path does not take (the Allow header says which it does)"}
PREDICT_ERRORS = {
    400: "an empty body, a damaged form, or a Content-Length that is no number",
    408: "a body that took longer than the server's --request-timeout to arrive",
    413: "a body over the size limit",
    415: "a body that is no image",
    422: "an image that cannot be read, has too many pixels, or has no digit; a form without its "
    "file or with other fields; a bad top or explain",
    503: "too many requests at once: try again in a moment",
    500: "a fault of the server's own, which should never happen: its log says what",
    **ANY_PATH_ERRORS,
}

IMAGE = {
    "type": "string",
    "format": "binary",
    "description": f"an image ({', '.join(UPLOAD_FORMATS)}) with a digit on it, darker than light "
    "paper or lighter than dark paper; an image without one is refused (422)",
}
PREDICT_BODY = {  # what POST /predict takes, which FastAPI cannot see (the route reads the body itself)
    "required": True,
    "content": {
        "multipart/form-data": {
            "schema": {
                "type": "object",
                "properties": {"file": IMAGE},
                "required": ["file"],
                "additionalProperties": False,
            },
            "encoding": {"file": {"contentType": "image/*"}},
        },
        "image/*": {"schema": IMAGE},
        "application/octet-stream": {"schema": IMAGE},
    },
}
PREDICT_EXAMPLE = {
    "file": "seven.png",
    "digit": 7,
    "label": "7",
    "probability": 0.993,
    "top": [
        {"digit": 7, "label": "7", "probability": 0.993},
        {"digit": 1, "label": "1", "probability": 0.004},
        {"digit": 2, "label": "2", "probability": 0.002},
    ],
    "notes": [],
    "image": "data:image/png;base64,iVBORw0KGgo...",
}
EXPLAIN_EXAMPLE = {  # what ?explain=1 adds to PREDICT_EXAMPLE (the improved net on docs/digits/7.png)
    "class": 7,
    "map": [[6.44, 6.44, 6.44, "... 28 numbers"], "... 28 rows"],
    "coarse": [[6.44, 16.32, 11.41], [11.45, 24.99, 13.09], [17.28, 19.39, 7.32]],
    "scores": [-3.57, -1.31, 1.39, 1.8, -0.78, -5.41, -7.84, 14.19, -2.3, 3.19],
}
PREDICT_ANSWERS: dict[int | str, dict[str, Any]] = {
    200: {
        "model": Prediction,
        "description": "the prediction",
        "content": {
            "application/json": {
                "examples": {
                    "plain": {"summary": "POST /predict", "value": PREDICT_EXAMPLE},
                    "explain": {
                        "summary": "POST /predict?explain=1 (map cut short here)",
                        "value": {**PREDICT_EXAMPLE, "explain": EXPLAIN_EXAMPLE},
                    },
                }
            }
        },
    },
    **error_answers(PREDICT_ERRORS),
}
HEALTH_ANSWERS = {200: {"model": Health, "description": "up, with its net"}, **error_answers(ANY_PATH_ERRORS)}
MODEL_ANSWERS = {200: {"model": NetDescription, "description": "the net"}, **error_answers(ANY_PATH_ERRORS)}
# Kept for code written when the 4xx answers were all the description had.
ERROR_RESPONSES = error_answers({s: w for s, w in PREDICT_ERRORS.items() if s not in (405, 408, 500)})
