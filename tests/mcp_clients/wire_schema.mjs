// Validates JSON-RPC messages against the MCP specification's published JSON schema of their revision,
// as the conformance suite does (the same schemas, Ajv and formats, the same choice of definition per
// message), for tests/test_mcp_wire_schema.py.
//
//   node wire_schema.mjs < messages.json > verdicts.json
//
// Input: [{"version": "2025-11-25", "message": {...}, "requestMethod": "tools/call"}, ...], where
// requestMethod names the request a response answers. Output: one list of error strings per message
// (empty: valid), and the revisions whose schemas were found.
//
// The schemas are those @modelcontextprotocol/conformance bundles (the files of the specification's
// repository, schema/<revision>/schema.json, inlined by its build): this reads them out of the pinned
// bundle, conformance-next in package.json, rather than keeping copies here.

import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import vm from "node:vm";

const require = createRequire(import.meta.url);
const Ajv = require("ajv").default;
const Ajv2020 = require("ajv/dist/2020").default;
const addFormats = require("ajv-formats").default;

const BUNDLE = new URL("./node_modules/conformance-next/dist/index.js", import.meta.url);

/** The end (exclusive) of the object literal that opens at `start` (a "{"), skipping strings and templates. */
function literalEnd(text, start) {
  let depth = 0;
  const templates = []; // brace depth at which each open template's `${` began
  for (let i = start; i < text.length; i++) {
    const c = text[i];
    if (c === '"' || c === "'") {
      for (i++; text[i] !== c; i++) if (text[i] === "\\") i++;
    } else if (c === "`" || (c === "}" && templates.length && templates.at(-1) === depth)) {
      if (c === "}") templates.pop();
      for (i++; text[i] !== "`"; i++) {
        if (text[i] === "\\") i++;
        else if (text[i] === "$" && text[i + 1] === "{") {
          templates.push(depth);
          i++;
          break;
        }
      }
    } else if (c === "{") depth++;
    else if (c === "}" && --depth === 0) return i + 1;
  }
  throw new Error("unterminated object literal in the conformance bundle");
}

/** {revision: schema} as the bundle holds them: `{"2025-03-26":X,"2025-06-18":Y,"2025-11-25":Z,[NAME]:W}`. */
function bundledSchemas() {
  const text = readFileSync(BUNDLE, "utf8");
  const table = /\{"2025-03-26":(\w+),"2025-06-18":(\w+),"2025-11-25":(\w+),\[(\w+)\]:(\w+)\}/.exec(text);
  if (!table) throw new Error(`no table of spec schemas in ${BUNDLE.pathname}; has the pinned version changed?`);
  const [, v0326, v0618, v1125, latestName, latest] = table;
  const latestVersion = new RegExp(`[,;\\s]${latestName}=\`(\\d{4}-\\d\\d-\\d\\d)\``).exec(text)?.[1];
  if (!latestVersion) throw new Error(`cannot tell which revision ${latestName} names in the conformance bundle`);
  const out = {};
  for (const [version, name] of [["2025-03-26", v0326], ["2025-06-18", v0618], ["2025-11-25", v1125], [latestVersion, latest]]) {
    const at = new RegExp(`[,;\\s]${name}=\\{\\$schema:`).exec(text);
    if (!at) throw new Error(`no schema literal ${name} (${version}) in the conformance bundle`);
    const start = at.index + at[0].indexOf("{");
    const schema = vm.runInNewContext(`(${text.slice(start, literalEnd(text, start))})`);
    if (!(schema.$defs ?? schema.definitions)?.JSONRPCMessage) throw new Error(`schema ${version} has no JSONRPCMessage`);
    out[version] = JSON.parse(JSON.stringify(schema));
  }
  return out;
}

const MESSAGE_DEFS = new Set(["ClientRequest", "ClientNotification", "ClientResult", "ClientMessage",
  "ServerRequest", "ServerNotification", "ServerResult", "ServerMessage"]);

/** A validator per revision, choosing each message's definition by its method, error code or request. */
function checker(schema, version) {
  const ajv = schema.$schema?.includes("2020-12") ? new Ajv2020({ strict: false, allErrors: true }) : new Ajv({ strict: false, allErrors: true });
  addFormats(ajv);
  ajv.addFormat("byte", true);
  const id = `mcp://${version}/schema.json`;
  ajv.addSchema({ ...schema, $id: id });
  const key = "$defs" in schema ? "$defs" : "definitions";
  const defs = schema[key];
  const byMethod = new Map(), byError = new Map(), resultOf = new Map(), compiled = new Map();
  for (const [name, def] of Object.entries(defs)) {
    if (MESSAGE_DEFS.has(name)) continue;
    const method = def.properties?.method?.const;
    if (typeof method === "string") {
      byMethod.set(method, name);
      const result = name.endsWith("Request") ? `${name.slice(0, -7)}Result` : null;
      if (result && result in defs) resultOf.set(method, result);
    }
    for (const part of def.properties?.error?.allOf ?? []) {
      const code = part.properties?.code?.const;
      if (typeof code === "number") byError.set(code, name);
    }
  }
  const first = (...names) => names.find((n) => n in defs) ?? names.at(-1);
  const check = (name, value, where = name) => {
    let v = compiled.get(name);
    if (!v) compiled.set(name, (v = ajv.compile({ $ref: `${id}#/${key}/${name}` })));
    return v(value) ? [] : v.errors.map((e) => `${where}${e.instancePath}: ${e.message}`);
  };
  return ({ message, requestMethod }) => {
    if (typeof message.method === "string") {
      return check(byMethod.get(message.method) ?? ("id" in message ? "JSONRPCRequest" : "JSONRPCNotification"), message);
    }
    if (message.error != null) return check(byError.get(message.error.code) ?? first("JSONRPCErrorResponse", "JSONRPCError"), message);
    if (message.result !== undefined) {
      const result = message.result?.resultType === "input_required" && "InputRequiredResult" in defs ? "InputRequiredResult" : resultOf.get(requestMethod);
      const errors = result ? check(result, message.result, `${result} (result of ${requestMethod})`) : [];
      return errors.length ? errors : check(first("JSONRPCResultResponse", "JSONRPCResponse"), message);
    }
    return ["not a JSON-RPC request, notification or response"];
  };
}

const schemas = bundledSchemas();
const checkers = {};
const input = JSON.parse(readFileSync(0, "utf8"));
const verdicts = input.map((item) => {
  if (!(item.version in schemas)) return [`no schema for revision ${item.version}`];
  checkers[item.version] ??= checker(schemas[item.version], item.version);
  return checkers[item.version](item);
});
process.stdout.write(JSON.stringify({ revisions: Object.keys(schemas), verdicts }));
