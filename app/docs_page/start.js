// Starts Swagger UI on this API's own document. A file of its own, not an inline script, so
// that the page's Content-Security-Policy can allow scripts from this origin only.
window.addEventListener("DOMContentLoaded", function () {
  window.ui = SwaggerUIBundle({
    url: "/openapi.json",
    dom_id: "#swagger-ui",
    deepLinking: true,
    presets: [SwaggerUIBundle.presets.apis],
    layout: "BaseLayout",
    // Never ask validator.swagger.io (or anything else outside this API) about the document.
    validatorUrl: null,
    // A key typed into "Authorize" lives in this page only, never in the browser's storage.
    persistAuthorization: false,
  });
});
