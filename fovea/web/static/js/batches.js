// The batches page: upload a JSONL file (OpenAI batch lines or the cloud's dataset rows) and
// start a batch, watch the folder's batches run, cancel one, download its results as JSONL or
// Parquet. A key that may only read batches sees the list without the controls that write.
import {alertBox, field, fill, formatBytes, formatTime, h, saveBlob} from "./dom.js";
import {confirmAction, describeError, isForbidden, permissionNotice} from "./console.js";

const ENDPOINT = "/v1/chat/completions";
const ACTIVE = new Set(["validating", "in_progress", "finalizing", "cancelling"]);
const CANCELLABLE = new Set(["validating", "in_progress"]);
const POLL_MS = 1500;
const PAGE_SIZE = 20;
const READ_NEEDS = "Reading batches needs the role ai.viewer, ai.editor or ai.admin on the " +
  "folder; ask the folder's admin for a key whose service account has one.";

export async function render(root, session) {
  const page = new BatchesPage(root, session);
  await page.start();
  return () => page.stop();
}

class BatchesPage {
  constructor(root, session) {
    // The page's own element, in the view at once: when the user leaves, even before the
    // first answers came (and the shell got a cleanup to call), it is no longer connected.
    this.view = root.appendChild(h("div", {class: "console"}));
    this.session = session;
    this.api = session.api;
    this.rows = new Map(); // batch id -> BatchRow
    this.oldestId = null; // the last batch of the pages read: where "Show older" goes on
    this.canWrite = false;
    this.timer = null;
    this.polling = false;
    this.stopped = false;
    this.status = h("div", {class: "list-status", "aria-live": "polite"});
    this.tbody = h("tbody");
    this.more = h("button", {type: "button", class: "small", hidden: true,
      onclick: () => this.loadOlder()}, "Show older batches");
  }

  async start() {
    const title = h("h1", {}, "Batches");
    const intro = h("p", {class: "muted"},
      "Many chat requests in one file, run in the background at a lower priority than live ",
      "chat; results download as JSONL or Parquet.");
    fill(this.view, title, intro, h("p", {class: "muted"}, "Loading the folder's batches…"));
    let first;
    try {
      first = await this.api.get("/v1/batches", {limit: PAGE_SIZE});
    } catch (error) {
      const notice = isForbidden(error)
        ? permissionNotice("read batches", error, READ_NEEDS)
        : alertBox(describeError(error));
      fill(this.view, title, intro, notice);
      return;
    }
    if (this.left) return;
    // GET /v1/me said what the key may do: a reader gets the list without the controls.
    this.canWrite = this.session.can("batches.write") && this.session.can("files.write");
    fill(this.view, title, intro,
      this.canWrite ? this.renderForm() : readOnlyNotice(this.session),
      this.renderList());
    this.show(first, "replace");
  }

  get left() {
    return this.stopped || !this.view.isConnected;
  }

  stop() {
    this.stopped = true;
    clearTimeout(this.timer);
    this.timer = null;
  }

  // -- the new batch form ----------------------------------------------------------------

  renderForm() {
    const file = h("input", {type: "file", name: "file", required: true,
      accept: ".jsonl,.json,.txt,application/jsonl,application/x-ndjson"});
    const model = h("select", {name: "model"},
      this.session.models.map((m) => h("option", {value: m.id}, modelLabel(m))));
    const maxTokens = numberInput("max_tokens", {min: 1, step: 1});
    const temperature = numberInput("temperature", {min: 0, max: 2, step: 0.1});
    const topP = numberInput("top_p", {min: 0.01, max: 1, step: 0.01});
    const seed = numberInput("seed", {step: 1});
    const status = h("div", {class: "form-status", "aria-live": "polite"});
    const start = h("button", {type: "submit", class: "primary"}, "Start batch");
    const form = h("form", {class: "card", "aria-labelledby": "new-batch-title"},
      h("h2", {id: "new-batch-title"}, "New batch"),
      field("Input file (JSONL)", file,
        "OpenAI batch lines ({\"custom_id\", \"method\", \"url\", \"body\"}) or the cloud's " +
        "dataset rows ({\"request\": [...]}), one JSON object a line."),
      this.session.models.length
        ? field("Model", model, "Lines that name no model run on it; dataset rows need it.")
        : null,
      h("details", {class: "options"},
        h("summary", {}, "Completion options (optional)"),
        h("p", {class: "hint"},
          "Given to every request; a line that sets one itself keeps its own value."),
        h("div", {class: "grid-2"},
          field("Max tokens", maxTokens), field("Temperature", temperature),
          field("Top p", topP), field("Seed", seed))),
      status,
      h("div", {class: "actions"}, start));
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      const chosen = file.files[0];
      if (!chosen) return;
      start.disabled = true;
      try {
        fill(status, alertBox(`Uploading ${chosen.name} (${formatBytes(chosen.size)})…`, "notice"));
        const uploaded = await this.upload(chosen);
        fill(status, alertBox("Starting the batch…", "notice"));
        const options = completionOptions({maxTokens, temperature, topP, seed});
        const batch = await this.api.post("/v1/batches", {
          input_file_id: uploaded.id,
          endpoint: ENDPOINT,
          completion_window: "24h",
          model: this.session.models.length ? model.value : undefined,
          completion_options: options,
        });
        fill(status, alertBox(`Started ${batch.id}.`, "ok"));
        file.value = "";
        this.show({data: [batch]}, "prepend");
      } catch (error) {
        fill(status, alertBox(describeError(error)));
      } finally {
        start.disabled = false;
      }
    });
    return form;
  }

  upload(file) {
    const body = new FormData();
    body.append("purpose", "batch");
    body.append("file", file, file.name);
    return this.api.request("POST", "/v1/files", {body});
  }

  // -- the list --------------------------------------------------------------------------

  renderList() {
    const refresh = h("button", {type: "button", class: "small", onclick: () => this.reload()},
      "Refresh");
    return h("section", {class: "card", "aria-labelledby": "batch-list-title"},
      h("div", {class: "card-head"}, h("h2", {id: "batch-list-title"}, "Batches of the folder"),
        refresh),
      this.status,
      h("div", {class: "table-wrap"},
        h("table", {class: "batches"},
          h("thead", {}, h("tr", {},
            ["Batch", "Status", "Created", "Progress", "Endpoint", "Actions"].map(
              (name) => h("th", {scope: "col"}, name)))),
          this.tbody)),
      h("div", {class: "actions"}, this.more));
  }

  // Rows for `page`'s batches: the first page "replace"s the table, an older one is
  // "append"ed, a batch just started goes on top ("prepend").
  show(page, mode) {
    if (mode === "replace") {
      this.rows.clear();
      fill(this.tbody);
    }
    for (const batch of page.data) {
      const known = this.rows.get(batch.id);
      if (known) {
        known.update(batch);
        continue;
      }
      const row = new BatchRow(batch, this);
      this.rows.set(batch.id, row);
      if (mode === "prepend") this.tbody.prepend(...row.elements);
      else this.tbody.append(...row.elements);
    }
    if (mode !== "prepend") {
      this.oldestId = page.last_id ?? this.oldestId;
      this.more.hidden = !page.has_more;
    }
    this.showEmpty();
    this.schedulePoll();
  }

  showEmpty() {
    const empty = this.tbody.querySelector(".empty");
    if (this.rows.size === 0 && !empty) {
      this.tbody.append(h("tr", {class: "empty"},
        h("td", {colspan: 6, class: "muted"}, "No batches in this folder yet.")));
    } else if (this.rows.size > 0 && empty) {
      empty.remove();
    }
  }

  async reload() {
    await this.guarded(async () => {
      this.show(await this.api.get("/v1/batches", {limit: PAGE_SIZE}), "replace");
    });
  }

  async loadOlder() {
    await this.guarded(async () => {
      const after = this.oldestId;
      this.show(await this.api.get("/v1/batches", {limit: PAGE_SIZE, after}), "append");
    });
  }

  // Runs an action of the list; its failure is shown above the table in the server's words.
  async guarded(action) {
    fill(this.status);
    try {
      await action();
    } catch (error) {
      if (!this.left) fill(this.status, alertBox(describeError(error)));
    }
  }

  // -- watching running batches ------------------------------------------------------------

  // Poll only while a batch shown runs; the page's cleanup stops it.
  schedulePoll() {
    if (this.left || this.timer || this.polling) return;
    if (![...this.rows.values()].some((row) => ACTIVE.has(row.batch.status))) return;
    this.timer = setTimeout(() => this.poll(), POLL_MS);
  }

  async poll() {
    this.timer = null;
    if (this.left) return;
    this.polling = true; // one round at a time: a round started meanwhile would double the rate
    const active = [...this.rows.values()].filter((row) => ACTIVE.has(row.batch.status));
    await Promise.all(active.map(async (row) => {
      try {
        const batch = await this.api.get(`/v1/batches/${encodeURIComponent(row.batch.id)}`);
        if (!this.left) row.update(batch);
      } catch (error) {
        if (!this.left) fill(this.status, alertBox(describeError(error)));
      }
    }));
    this.polling = false;
    this.schedulePoll();
  }

  async cancel(row) {
    const id = row.batch.id;
    const confirmed = await confirmAction(
      `Cancel ${id}? Requests already answered stay in its results; the rest are not run.`,
      "Cancel batch", {keepLabel: "Keep running"});
    if (!confirmed) return;
    await this.guarded(async () => {
      row.update(await this.api.post(`/v1/batches/${encodeURIComponent(id)}/cancel`));
      this.schedulePoll();
    });
  }

  async download(batch, fileId, kind, format) {
    const query = format === "parquet" ? {format: "parquet"} : undefined;
    await this.guarded(async () => {
      const {blob} = await this.api.download(
        `/v1/files/${encodeURIComponent(fileId)}/content`, query);
      saveBlob(blob, `${batch.id}-${kind}.${format}`);
    });
  }
}

// One batch: its row in the table and, under it, a row with its errors when it has any.
// Updated in place, so a poll does not take the keyboard focus from its buttons.
class BatchRow {
  constructor(batch, page) {
    this.page = page;
    this.batch = null;
    this.statusCell = h("td");
    this.progress = h("progress", {"aria-label": `Progress of ${batch.id}`});
    this.counts = h("span", {class: "counts"});
    this.actions = h("div", {class: "actions"});
    this.errors = h("td", {colspan: 6});
    this.row = h("tr", {dataset: {batchId: batch.id}},
      h("td", {}, h("code", {}, batch.id), h("div", {class: "hint"}, describeInput(batch))),
      this.statusCell,
      h("td", {class: "nowrap"}, formatTime(batch.created_at)),
      h("td", {class: "progress-cell"}, this.progress, this.counts),
      h("td", {}, h("code", {}, batch.endpoint)),
      h("td", {}, this.actions));
    this.errorRow = h("tr", {class: "batch-errors", hidden: true}, this.errors);
    this.elements = [this.row, this.errorRow];
    this.update(batch);
  }

  update(batch) {
    const previous = this.batch;
    this.batch = batch;
    const {total, completed, failed} = batch.request_counts;
    fill(this.statusCell, h("span", {class: `status status-${batch.status}`},
      batch.status.replace("_", " ")));
    if (total === 0 && ACTIVE.has(batch.status)) {
      this.progress.removeAttribute("value"); // still validating: how many is not known yet
    } else {
      this.progress.max = Math.max(total, 1);
      this.progress.value = completed + failed;
    }
    fill(this.counts, `${completed}/${total} completed, ${failed} failed`);
    if (!previous || previous.status !== batch.status ||
        previous.output_file_id !== batch.output_file_id ||
        previous.error_file_id !== batch.error_file_id) {
      this.renderActions();
    }
    this.renderErrors();
  }

  renderActions() {
    const {batch, page} = this;
    const buttons = [];
    if (page.canWrite && CANCELLABLE.has(batch.status)) {
      buttons.push(h("button", {type: "button", class: "small danger",
        "aria-label": `Cancel ${batch.id}`, onclick: () => page.cancel(this)}, "Cancel"));
    }
    const downloads = [
      [batch.output_file_id, "output", "jsonl", "Download results (JSONL)"],
      [batch.output_file_id, "output", "parquet", "Download results (Parquet)"],
      [batch.error_file_id, "errors", "jsonl", "Download errors (JSONL)"],
    ];
    for (const [fileId, kind, format, label] of downloads) {
      if (!fileId) continue;
      buttons.push(h("button", {type: "button", class: "small",
        "aria-label": `${label} of ${batch.id}`,
        onclick: () => page.download(batch, fileId, kind, format)}, label));
    }
    fill(this.actions, buttons.length ? buttons : h("span", {class: "muted"}, "–"));
  }

  // The batch's own errors (a file that failed validation), in the server's words.
  renderErrors() {
    const errors = this.batch.errors?.data ?? [];
    this.errorRow.hidden = errors.length === 0;
    if (!errors.length) return;
    fill(this.errors, h("div", {class: "alert error"},
      h("strong", {}, `${this.batch.id} reported:`),
      h("ul", {}, errors.map((e) => h("li", {}, e.message ?? e.code,
        e.code ? h("span", {class: "muted"}, ` (${e.code})`) : null)))));
  }
}

function readOnlyNotice(session) {
  const roles = session.identity?.roles ?? [];
  return alertBox(
    h("div", {},
      h("strong", {}, "Read-only: "),
      "this key may read batches and download their results, but not start or cancel them ",
      `(its roles on the folder: ${roles.join(", ") || "none"}; starting batches needs `,
      "ai.editor or ai.admin)."),
    "notice",
  );
}

function describeInput(batch) {
  const format = batch.input_format === "dataset" ? "dataset rows" : "OpenAI lines";
  return batch.model ? `${format} · ${modelName(batch.model)}` : format;
}

function modelName(uri) {
  return uri.replace(/^[a-z]+:\/\/[^/]+\//, "");
}

function modelLabel(model) {
  const name = modelName(model.id);
  return model.demo ? `${name} (demo)` : name;
}

function numberInput(name, attrs) {
  return h("input", {type: "number", name, inputmode: "decimal", ...attrs});
}

// The options filled in, as the Batches API's completion_options; undefined when none is.
function completionOptions({maxTokens, temperature, topP, seed}) {
  const options = {};
  const put = (key, input) => {
    if (input.value !== "") options[key] = Number(input.value);
  };
  put("max_tokens", maxTokens);
  put("temperature", temperature);
  put("top_p", topP);
  put("seed", seed);
  return Object.keys(options).length ? options : undefined;
}
