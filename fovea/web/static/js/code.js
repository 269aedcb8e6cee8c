// "Show code": the playground's conversation as a program a client runs, in three shapes: the
// `openai` client as the cloud's own guide writes it, curl, and the cloud's SDK. Pure functions
// of a description of the conversation, so that what the page sends and what it shows agree:
//
//   {origin, folderId, model: "gpt://<folder>/<name>/<branch>",
//    options: {temperature, top_p, max_tokens, seed, json},   // undefined: the server's default
//    messages: [{role, text, images: [{file, mime, detail}]}]}
//
// An image is named by the file it is read from (`file`, see imageFileNames), never embedded:
// the programs read the images next to them and the key from FOVEA_API_KEY.

export const KEY_VARIABLE = "FOVEA_API_KEY";

const EXTENSIONS = {
  "image/png": "png", "image/jpeg": "jpg", "image/webp": "webp", "image/gif": "gif", "image/bmp": "bmp",
};
const MAX_NAME = 60;
const LINE = 88;

// File names for images, in order: each the user's own file name made safe for a shell and a
// file system (letters, digits, '.', '_', '-'), `image<N>.<ext>` when it had none, unique
// regardless of case. `images`: [{name, mime}].
export function imageFileNames(images) {
  const taken = new Set();
  return images.map((image, index) => {
    const base = (image.name ?? "").split(/[\\/]/).pop();
    const match = /^(.*?)(?:\.([A-Za-z0-9]{1,5}))?$/.exec(base);
    const extension = match[2]?.toLowerCase() ?? EXTENSIONS[image.mime] ?? "png";
    const stem = safeStem(match[1]) || `image${index + 1}`;
    let name = `${stem}.${extension}`;
    for (let n = 2; taken.has(name.toLowerCase()); n += 1) name = `${stem}-${n}.${extension}`;
    taken.add(name.toLowerCase());
    return name;
  });
}

// Letters, digits, '.', '_' and '-' only, not starting with a dot or a dash (an option to a
// shell command); empty when nothing of the name is left (a name all in another alphabet).
function safeStem(stem) {
  const cleaned = stem.replace(/[^A-Za-z0-9._-]+/g, "_").replace(/^[._-]+/, "").slice(0, MAX_NAME);
  return /[A-Za-z0-9]/.test(cleaned) ? cleaned : "";
}

// The request's parameters beyond model and messages, in the API's own names.
function parameters(options) {
  const result = {};
  for (const name of ["temperature", "top_p", "max_tokens", "seed"]) {
    if (options[name] !== undefined) result[name] = options[name];
  }
  if (options.json) result.response_format = {type: "json_object"};
  return result;
}

// A conversation's messages in the API's shape; each image's URL is what `imageUrl(image)` makes.
function wireMessages(messages, imageUrl) {
  return messages.map(({role, text, images = []}) => {
    if (!images.length) return {role, content: text};
    const parts = text ? [{type: "text", text}] : [];
    for (const image of images) {
      const url = {url: imageUrl(image)};
      if (image.detail && image.detail !== "auto") url.detail = image.detail;
      parts.push({type: "image_url", image_url: url});
    }
    return {role, content: parts};
  });
}

const hasImages = (spec) => spec.messages.some((message) => message.images?.length);

// -- Python ---------------------------------------------------------------------------------

// A Python expression written as is inside a literal (the call that reads an image file).
class Expression {
  constructor(text) {
    this.text = text;
  }
}

// `value` as a Python literal, wrapped over lines the way black would when it is too long.
// `used`: the columns already taken on the first line.
function pyLiteral(value, indent = 0, used = indent) {
  const inline = pyInline(value);
  const container = Array.isArray(value) || (value && value.constructor === Object);
  if (!container || used + inline.length <= LINE) return inline;
  const entries = Array.isArray(value) ? value.map((item) => [null, item]) : Object.entries(value);
  if (!entries.length) return inline;
  const pad = " ".repeat(indent + 4);
  const lines = entries.map(([key, item]) => {
    const prefix = key === null ? "" : `${JSON.stringify(key)}: `;
    return `${pad}${prefix}${pyLiteral(item, indent + 4, pad.length + prefix.length)},`;
  });
  const [open, close] = Array.isArray(value) ? ["[", "]"] : ["{", "}"];
  return `${open}\n${lines.join("\n")}\n${" ".repeat(indent)}${close}`;
}

function pyInline(value) {
  if (value instanceof Expression) return value.text;
  if (value === null || value === undefined) return "None";
  if (value === true) return "True";
  if (value === false) return "False";
  // A JSON string is a valid Python string literal; Python source is UTF-8.
  if (typeof value === "string" || typeof value === "number") return JSON.stringify(value);
  if (Array.isArray(value)) return `[${value.map(pyInline).join(", ")}]`;
  const items = Object.entries(value).map(([key, item]) => `${JSON.stringify(key)}: ${pyInline(item)}`);
  return `{${items.join(", ")}}`;
}

const PY_DATA_URL = `

def data_url(path):
    """An image file as a base64 data URL, as the API takes images."""
    mime = mimetypes.guess_type(path)[0] or "image/png"
    with open(path, "rb") as image:
        return f"data:{mime};base64,{base64.b64encode(image.read()).decode()}"

`;

function pyImports(spec, library) {
  const imports = hasImages(spec) ? ["import base64", "import mimetypes", "import os"] : ["import os"];
  return `${imports.join("\n")}\n\n${library}\n`;
}

function pyMessages(spec) {
  return wireMessages(spec.messages, (image) => new Expression(`data_url(${JSON.stringify(image.file)})`));
}

// The `openai` client, as the cloud's guide shows it for its multimodal models.
export function pythonCode(spec) {
  const call = {model: spec.model, messages: pyMessages(spec), ...parameters(spec.options)};
  const args = Object.entries(call)
    .map(([name, value]) => `    ${name}=${pyLiteral(value, 4, 5 + name.length)},`)
    .join("\n");
  return [
    pyImports(spec, "from openai import OpenAI"),
    `client = OpenAI(api_key=os.environ["${KEY_VARIABLE}"], base_url="${spec.origin}/v1")`,
    hasImages(spec) ? PY_DATA_URL : "",
    `response = client.chat.completions.create(\n${args}\n)`,
    "print(response.choices[0].message.content)",
    "",
  ].join("\n");
}

// The cloud's SDK (yandex-ai-studio-sdk) pointed at this server: chat goes over HTTP, and with
// no gRPC endpoint nothing is discovered.
export function sdkCode(spec) {
  const [name, branch] = modelNameAndBranch(spec.model);
  const {temperature, max_tokens: maxTokens, top_p: topP, seed} = spec.options;
  const settings = [];
  if (temperature !== undefined) settings.push(`temperature=${pyInline(temperature)}`);
  if (maxTokens !== undefined) settings.push(`max_tokens=${pyInline(maxTokens)}`);
  if (spec.options.json) settings.push('response_format="json"');
  // The SDK has no argument for these; it sends extra_query's fields as they are.
  const extra = {};
  if (topP !== undefined) extra.top_p = topP;
  if (seed !== undefined) extra.seed = seed;
  if (Object.keys(extra).length) settings.push(`extra_query=${pyInline(extra)}`);
  const version = branch === "latest" ? "" : `, model_version=${JSON.stringify(branch)}`;
  let model = `model = sdk.chat.completions(${JSON.stringify(name)}${version})`;
  if (settings.length) model += `.configure(\n${settings.map((s) => `    ${s},`).join("\n")}\n)`;
  return [
    pyImports(spec, "from yandex_ai_studio_sdk import AIStudio"),
    "sdk = AIStudio(",
    `    folder_id=${JSON.stringify(spec.folderId)},`,
    `    auth=os.environ["${KEY_VARIABLE}"],`,
    "    endpoint=None,  # no gRPC: chat goes over HTTP to the address below",
    `    service_map={"http_completions": "${spec.origin}/v1/"},`,
    ")",
    hasImages(spec) ? PY_DATA_URL : "",
    `messages = ${pyLiteral(pyMessages(spec), 0, 11)}`,
    model,
    "result = model.run(messages)",
    "print(result.text)",
    "",
  ].join("\n");
}

function modelNameAndBranch(uri) {
  const match = /^[a-z]+:\/\/[^/]+\/([^/]+)(?:\/([^/]+))?$/.exec(uri);
  return match ? [match[1], match[2] ?? "latest"] : [uri, "latest"];
}

// -- curl -----------------------------------------------------------------------------------

// curl with the JSON in a here-document: bash puts each image's base64 in place as it reads it.
export function curlCode(spec) {
  // A marker no text can hold (JSON escapes control characters), replaced after the escaping.
  const marker = (index) => `\u0001${index}\u0001`;
  const images = [];
  const messages = wireMessages(spec.messages, (image) => {
    images.push(image);
    return marker(images.length - 1);
  });
  const body = JSON.stringify({model: spec.model, messages, ...parameters(spec.options)}, null, 2);
  // Inside an unquoted here-document only \, $ and ` are special to bash.
  const escaped = body.replace(/[\\$`]/g, (character) => `\\${character}`);
  const json = escaped.replace(/\\\\u0001(\d+)\\\\u0001/g, (_, index) => {
    const image = images[Number(index)];
    return `data:${image.mime};base64,$(base64 -w0 ${image.file})`;
  });
  return [
    `curl ${spec.origin}/v1/chat/completions \\`,
    `  -H "Authorization: Bearer $${KEY_VARIABLE}" \\`,
    '  -H "Content-Type: application/json" \\',
    "  -d @- <<EOF",
    json,
    "EOF",
    "",
  ].join("\n");
}
