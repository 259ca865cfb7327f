/**
 * The API reference page at `/docs`: plain HTML written from the OpenAPI document, with no
 * script and nothing loaded from elsewhere, so it works offline and on an edge runtime. (The
 * Swagger UI page that loaded unpinned scripts from a CDN, blank offline, is gone.)
 *
 * @module
 */

/** The parts of an OpenAPI 3.0 schema object this page shows. */
interface SchemaObject {
  $ref?: string;
  type?: string;
  format?: string;
  enum?: unknown[];
  items?: SchemaObject;
  properties?: Record<string, SchemaObject>;
  required?: string[];
  default?: unknown;
  description?: string;
  minimum?: number;
  maximum?: number;
  minItems?: number;
  maxItems?: number;
  minLength?: number;
  nullable?: boolean;
  anyOf?: SchemaObject[];
  oneOf?: SchemaObject[];
}

interface MediaTypes {
  content?: Record<string, { schema?: SchemaObject }>;
  description?: string;
}

interface Operation {
  summary?: string;
  description?: string;
  parameters?: {
    name: string;
    in: string;
    required?: boolean;
    schema?: SchemaObject;
    description?: string;
  }[];
  requestBody?: MediaTypes;
  responses?: Record<string, MediaTypes>;
}

/** The parts of an OpenAPI 3.0 document this page shows. */
export interface OpenApiDocument {
  info: { title: string; version: string; description?: string };
  paths?: Record<string, Record<string, Operation>>;
  components?: { schemas?: Record<string, SchemaObject> };
}

/**
 * The reference page of an OpenAPI document.
 *
 * @example
 * ```ts
 * import { renderReference } from "./reference.ts";
 * const html = renderReference({ info: { title: "api", version: "1" }, paths: {} });
 * console.assert(html.includes("<h1>api 1</h1>"));
 * ```
 */
export function renderReference(document: OpenApiDocument): string {
  const schemas = document.components?.schemas ?? {};
  const resolve = (schema: SchemaObject | undefined): SchemaObject | undefined =>
    schema?.$ref ? schemas[schema.$ref.replace("#/components/schemas/", "")] : schema;
  const sections: string[] = [];
  for (const [path, methods] of Object.entries(document.paths ?? {})) {
    for (const [method, op] of Object.entries(methods)) {
      const parts = [
        `<h2 id="${_escape(method + path)}"><code>${method.toUpperCase()} ${
          _escape(path)
        }</code></h2>`,
        op.summary ? `<p><b>${_escape(op.summary)}</b></p>` : "",
        op.description ? `<p>${_escape(op.description)}</p>` : "",
      ];
      if (op.parameters?.length) {
        parts.push(
          "<h3>Query</h3>",
          _table(
            op.parameters.map((p) => ({
              name: p.name,
              required: p.required ?? false,
              schema: { ...p.schema, description: p.description ?? p.schema?.description },
            })),
          ),
        );
      }
      for (const [type, media] of Object.entries(op.requestBody?.content ?? {})) {
        const schema = resolve(media.schema);
        parts.push(`<h3>Body: <code>${_escape(type)}</code></h3>`);
        if (schema?.properties) {
          parts.push(_table(
            Object.entries(schema.properties).map(([name, s]) => ({
              name,
              required: schema.required?.includes(name) ?? false,
              schema: resolve(s) ?? s,
            })),
          ));
        }
      }
      const responses = Object.entries(op.responses ?? {}).map(([status, r]) => {
        const types = Object.keys(r.content ?? {}).map((t) => `<code>${_escape(t)}</code>`);
        return `<li><b>${status}</b> ${_escape(r.description ?? "")} ${types.join(", ")}</li>`;
      });
      parts.push("<h3>Responses</h3>", `<ul>${responses.join("")}</ul>`);
      sections.push(`<section>${parts.join("\n")}</section>`);
    }
  }
  const { title, version, description } = document.info;
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>${_escape(title)} API reference</title>
<style>
body { font: 15px/1.5 system-ui, sans-serif; max-width: 60rem; margin: 2rem auto; padding: 0 1rem; }
table { border-collapse: collapse; width: 100%; } td, th { border: 1px solid #ccc; padding: 0.2rem 0.5rem; text-align: left; vertical-align: top; }
code { background: #f3f3f3; padding: 0 0.2rem; } section { border-top: 1px solid #ddd; margin-top: 1.5rem; }
</style>
</head>
<body>
<h1>${_escape(title)} ${_escape(version)}</h1>
<p>${_escape(description ?? "")}</p>
<p>The machine-readable contract: <a href="/openapi.json">/openapi.json</a> (load it into any
OpenAPI client). Playground: <a href="/">/</a>.</p>
${sections.join("\n")}
</body>
</html>
`;
}

function _table(rows: { name: string; required: boolean; schema: SchemaObject }[]): string {
  const body = rows.map(({ name, required, schema }) =>
    `<tr><td><code>${_escape(name)}</code>${required ? " (required)" : ""}</td><td>${
      _escape(_type(schema))
    }</td><td>${_escape(_constraints(schema))}</td><td>${
      _escape(schema.description ?? "")
    }</td></tr>`
  );
  return `<table><tr><th>field</th><th>type</th><th>allowed</th><th>meaning</th></tr>${
    body.join("")
  }</table>`;
}

function _type(schema: SchemaObject): string {
  if (schema.$ref) return schema.$ref.replace("#/components/schemas/", "");
  if (schema.anyOf ?? schema.oneOf) {
    return (schema.anyOf ?? schema.oneOf ?? []).map(_type).join(" | ");
  }
  if (schema.type === "array" && schema.items) {
    const items = _type(schema.items);
    return items.includes(" | ") ? `(${items})[]` : `${items}[]`;
  }
  // zod writes a nullable union's null as a branch of its own, `{ nullable: true }`.
  if (schema.nullable && schema.type === undefined) return "null";
  return (schema.format ? `${schema.type} (${schema.format})` : schema.type) ?? "any";
}

function _constraints(schema: SchemaObject): string {
  const out: string[] = [];
  if (schema.enum) out.push(schema.enum.map((v) => JSON.stringify(v)).join(" | "));
  if (schema.minimum !== undefined || schema.maximum !== undefined) {
    out.push(`${schema.minimum ?? ""}..${schema.maximum ?? ""}`);
  }
  if (schema.items?.minimum !== undefined || schema.items?.maximum !== undefined) {
    out.push(`each ${schema.items.minimum ?? ""}..${schema.items.maximum ?? ""}`);
  }
  if (schema.minItems !== undefined || schema.maxItems !== undefined) {
    out.push(`${schema.minItems ?? 0}..${schema.maxItems ?? ""} items`);
  }
  if (schema.default !== undefined) out.push(`default ${JSON.stringify(schema.default)}`);
  return out.join("; ");
}

function _escape(text: string): string {
  return text.replace(/[&<>"']/g, (ch) => `&#${ch.charCodeAt(0)};`);
}
