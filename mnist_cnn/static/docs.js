// /docs: Swagger UI, reading the server's description of its API.
"use strict";
window.ui = SwaggerUIBundle({ url: "openapi.json", dom_id: "#swagger-ui", deepLinking: true });
