// Starts Swagger UI on /docs. A file, not the inline script FastAPI writes: the docs' content
// security policy runs scripts of this origin only. The options are FastAPI's defaults.
SwaggerUIBundle({
  url: "/openapi.json",
  dom_id: "#swagger-ui",
  layout: "BaseLayout",
  deepLinking: true,
  showExtensions: true,
  showCommonExtensions: true,
  presets: [SwaggerUIBundle.presets.apis, SwaggerUIBundle.SwaggerUIStandalonePreset],
});
