// The API reference: FastAPI's OpenAPI document (/openapi.json) rendered as plain HTML,
// so that the documentation needs nothing from outside this server.
"use strict";

function el(tag, text, className) {
  const node = document.createElement(tag);
  if (text !== undefined) node.textContent = text;
  if (className) node.className = className;
  return node;
}

function resolve(spec, schema) {
  if (schema && schema.$ref) {
    const name = schema.$ref.split("/").pop();
    return spec.components.schemas[name] || {};
  }
  return schema || {};
}

function typeOf(spec, schema) {
  schema = resolve(spec, schema);
  if (schema.anyOf) return schema.anyOf.map((s) => typeOf(spec, s)).join(" | ");
  if (schema.type === "array") return `array of ${typeOf(spec, schema.items)}`;
  if (schema.format === "binary" || schema.contentMediaType) return "file";
  return schema.type || schema.title || "object";
}

function fieldTable(spec, schema) {
  schema = resolve(spec, schema);
  const table = el("table");
  const head = table.insertRow();
  for (const h of ["field", "type", "description"]) head.append(el("th", h));
  const required = new Set(schema.required || []);
  for (const [name, prop] of Object.entries(schema.properties || {})) {
    const row = table.insertRow();
    row.insertCell().textContent = name + (required.has(name) ? " *" : "");
    row.insertCell().textContent = typeOf(spec, prop);
    row.insertCell().textContent = resolve(spec, prop).description || "";
  }
  return table;
}

async function render() {
  const root = document.getElementById("api");
  const spec = await (await fetch("/openapi.json")).json();
  root.replaceChildren(el("p", spec.info.description, "panel"));
  for (const [path, methods] of Object.entries(spec.paths)) {
    for (const [method, op] of Object.entries(methods)) {
      const section = el("section", undefined, "panel");
      section.append(el("h2", `${method.toUpperCase()} ${path}`));
      if (op.summary) section.append(el("p", op.summary, "muted"));
      if (op.description) section.append(el("p", op.description));
      for (const p of op.parameters || []) {
        section.append(el("p", `${p.in} parameter ${p.name}: ${typeOf(spec, p.schema)}`, "small"));
      }
      const body = op.requestBody && op.requestBody.content;
      if (body) {
        for (const [type, content] of Object.entries(body)) {
          section.append(el("h3", `Request body (${type})`));
          section.append(fieldTable(spec, content.schema));
        }
      }
      section.append(el("h3", "Responses"));
      const list = el("ul");
      for (const [code, response] of Object.entries(op.responses || {})) {
        list.append(el("li", `${code}: ${response.description}`));
      }
      section.append(list);
      root.append(section);
    }
  }
}

document.addEventListener("DOMContentLoaded", () => {
  render().catch((err) => {
    document.getElementById("api").textContent = `cannot load /openapi.json: ${err}`;
  });
});
