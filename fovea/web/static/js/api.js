// Fovea's public API as the page uses it: the user's key on every request, OpenAI-shaped
// errors turned into ApiError with the server's own words, Server-Sent Events read as a stream.

export class ApiError extends Error {
  constructor(status, body, retryAfter) {
    const error = body?.error ?? {};
    super(error.message || `The server answered ${status}`);
    this.name = "ApiError";
    this.status = status;
    this.type = error.type ?? null;
    this.code = error.code ?? null;
    this.param = error.param ?? null;
    this.retryAfter = retryAfter ?? null;
  }

  // What the page shows: the server's message, with the status for the curious.
  describe() {
    const wait = this.retryAfter ? ` Retry after ${this.retryAfter} s.` : "";
    return this.status ? `${this.message}${wait} (HTTP ${this.status})` : this.message;
  }
}

export class Api {
  constructor(key) {
    this.key = key;
  }

  headers(extra = {}) {
    return {Authorization: `Bearer ${this.key}`, ...extra};
  }

  async fetch(method, path, {json, body, query, signal, headers} = {}) {
    const url = withQuery(path, query);
    const init = {method, headers: this.headers(headers), signal};
    if (json !== undefined) {
      init.body = JSON.stringify(json);
      init.headers["Content-Type"] = "application/json";
    } else if (body !== undefined) {
      init.body = body;
    }
    let response;
    try {
      response = await fetch(url, init);
    } catch (error) {
      if (error.name === "AbortError") throw error;
      throw new ApiError(0, {error: {message: `The server did not answer: ${error.message}`}});
    }
    if (!response.ok) throw await errorOf(response);
    return response;
  }

  async request(method, path, options = {}) {
    const response = await this.fetch(method, path, options);
    return response.status === 204 ? null : response.json();
  }

  get(path, query, options = {}) {
    return this.request("GET", path, {...options, query});
  }

  post(path, json, options = {}) {
    return this.request("POST", path, {...options, json});
  }

  delete(path, options = {}) {
    return this.request("DELETE", path, options);
  }

  // A file's bytes and the name the server gives it.
  async download(path, query) {
    const response = await this.fetch("GET", path, {query});
    const disposition = response.headers.get("Content-Disposition") ?? "";
    const match = /filename="?([^";]+)"?/.exec(disposition);
    return {blob: await response.blob(), filename: match ? match[1] : null};
  }

  // POST with "stream": true; yields each event's JSON. An error event mid-stream throws.
  async *stream(path, json, signal) {
    const response = await this.fetch("POST", path, {json, signal});
    const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = "";
    try {
      for (;;) {
        const {value, done} = await reader.read();
        if (done) break;
        buffer += value;
        let end;
        while ((end = buffer.indexOf("\n\n")) >= 0) {
          const event = buffer.slice(0, end);
          buffer = buffer.slice(end + 2);
          const data = event
            .split("\n")
            .filter((line) => line.startsWith("data:"))
            .map((line) => line.slice(5).trimStart())
            .join("\n");
          if (!data) continue;
          if (data === "[DONE]") return;
          const parsed = JSON.parse(data);
          if (parsed.error) throw new ApiError(parsed.error.status ?? 0, parsed);
          yield parsed;
        }
      }
    } finally {
      reader.releaseLock();
    }
  }
}

function withQuery(path, query) {
  if (!query) return path;
  const params = new URLSearchParams();
  for (const [name, value] of Object.entries(query)) {
    if (value === undefined || value === null) continue;
    for (const item of Array.isArray(value) ? value : [value]) params.append(name, String(item));
  }
  const text = params.toString();
  return text ? `${path}?${text}` : path;
}

async function errorOf(response) {
  let body = null;
  try {
    body = await response.json();
  } catch {
    body = {error: {message: `The server answered ${response.status} ${response.statusText}`}};
  }
  return new ApiError(response.status, body, response.headers.get("Retry-After"));
}

// The folder of a model URI: gpt://<folder>/<name>/<branch>.
export function folderOfModel(uri) {
  const match = /^[a-z]+:\/\/([^/]+)\//.exec(uri);
  return match ? match[1] : null;
}
