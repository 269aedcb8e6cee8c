// The Playground: a conversation with text and images with any model the key may use, the
// answer streamed with its usage and time to first token, and the same request as code.
// The page checks images before sending (type, size, count) only to spare a round trip: the
// server stays the judge, and its errors are shown in its own words.
import {ApiError} from "./api.js";
import {imageFileNames} from "./code.js";
import {CodeDialog} from "./code_dialog.js";
import {alertBox, field, fill, formatBytes, h, uniqueId} from "./dom.js";
import {
  carriesFiles, dataUrlOf, DETAILS, forgetImages, IMAGE_TYPES, imageProblem, MAX_IMAGE_BYTES, newImage,
  TYPE_NAMES,
} from "./images.js";

// The conversation outlives a visit to another page, not the key it was made with.
let kept = null;

function chatFor(session) {
  if (kept?.session !== session) {
    if (kept) forgetImages([...kept.turns.flatMap((turn) => turn.images ?? []), ...kept.draft.images]);
    kept = {
      session, modelId: session.models[0]?.id ?? null, system: "", turns: [],
      options: {temperature: "", top_p: "", max_tokens: "", seed: "", json: false},
      draft: {text: "", images: []}, controller: null,
    };
  }
  return kept;
}

export async function render(root, session) {
  const page = new Playground(session, chatFor(session));
  root.append(page.element);
  return () => page.close();
}

class Playground {
  constructor(session, chat) {
    this.session = session;
    this.chat = chat;
    this.messages = h("div", {class: "messages", role: "log", "aria-label": "Conversation"});
    this.notices = h("div", {class: "notices"});
    this.composer = this.buildComposer();
    this.settings = this.buildSettings();
    this.dialog = new CodeDialog();
    const toolbar = h("div", {class: "chat-head"},
      h("h1", {}, "Playground"),
      h("div", {class: "actions"},
        h("button", {type: "button", class: "small", onclick: () => this.openCode()}, "Show code"),
        h("button", {type: "button", class: "small", onclick: () => this.newChat()}, "New chat")));
    this.element = h("div", {class: "playground"},
      h("section", {class: "conversation", "aria-label": "Chat"},
        toolbar, this.messages, this.notices, this.composer),
      this.settings, this.dialog.element);
    for (const turn of chat.turns) this.messages.append(turnView(turn));
    this.renderDraft();
    this.setRunning(Boolean(chat.controller));
    // A file dropped beside the composer must not replace the page (and the conversation).
    this.onDocumentDrop = (event) => {
      if (carriesFiles(event)) event.preventDefault();
    };
    document.addEventListener("dragover", this.onDocumentDrop);
    document.addEventListener("drop", this.onDocumentDrop);
  }

  close() {
    this.chat.controller?.abort();
    document.removeEventListener("dragover", this.onDocumentDrop);
    document.removeEventListener("drop", this.onDocumentDrop);
  }

  model() {
    return this.session.models.find((model) => model.id === this.chat.modelId) ?? null;
  }

  // -- settings -----------------------------------------------------------------------------

  buildSettings() {
    const models = this.session.models;
    const select = h("select", {name: "model"}, models.map((model) =>
      h("option", {value: model.id, selected: model.id === this.chat.modelId},
        `${modelName(model.id)} · ${model.branch}`)));
    const about = h("div");
    const showModel = () => {
      const model = this.model();
      fill(about, model ? modelAbout(model) : alertBox(
        "This key may not list any model, so there is nothing to chat with.", "warning"));
    };
    select.addEventListener("change", () => {
      this.chat.modelId = select.value;
      showModel();
      this.renderDraft();
    });
    showModel();
    const system = h("textarea", {name: "system", rows: 3, placeholder: "You are a helpful assistant."});
    system.value = this.chat.system;
    system.addEventListener("input", () => { this.chat.system = system.value; });
    return h("aside", {class: "settings card", "aria-label": "Settings"},
      h("h2", {}, "Settings"),
      field("Model", select), about,
      field("System prompt", system),
      h("div", {class: "settings-grid"},
        this.numberField("Temperature", "temperature", {min: 0, max: 2, step: 0.1}),
        this.numberField("Top p", "top_p", {min: 0, max: 1, step: 0.05}),
        this.numberField("Max tokens", "max_tokens", {min: 1, step: 1}),
        this.numberField("Seed", "seed", {step: 1})),
      this.jsonField(),
      h("p", {class: "hint"}, "Empty fields leave the server's defaults."));
  }

  numberField(label, name, limits) {
    const input = h("input", {
      type: "number", name, inputmode: limits.step === 1 ? "numeric" : "decimal", placeholder: "default",
      ...limits,
    });
    input.value = this.chat.options[name];
    input.addEventListener("input", () => { this.chat.options[name] = input.value; });
    return field(label, input);
  }

  jsonField() {
    const box = h("input", {type: "checkbox", name: "json", checked: this.chat.options.json});
    box.addEventListener("change", () => { this.chat.options.json = box.checked; });
    const wrapped = field("JSON mode", box,
      "The answer is a JSON object (response_format json_object); ask for JSON in the message too.");
    wrapped.classList.add("checkbox");
    return wrapped;
  }

  // The request's parameters: the fields left empty are not sent.
  parameters() {
    const {options} = this.chat;
    const result = {};
    for (const name of ["temperature", "top_p", "max_tokens", "seed"]) {
      if (options[name] !== "") result[name] = Number(options[name]);
    }
    if (options.json) result.json = true;
    return result;
  }

  // -- composer -----------------------------------------------------------------------------

  buildComposer() {
    this.textarea = h("textarea", {name: "message", rows: 3, placeholder: "Ask about your pictures…"});
    this.textarea.value = this.chat.draft.text;
    this.textarea.addEventListener("input", () => { this.chat.draft.text = this.textarea.value; });
    this.textarea.addEventListener("keydown", (event) => {
      if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) {
        event.preventDefault();
        this.send();
      }
    });
    this.textarea.addEventListener("paste", (event) => {
      const files = [...(event.clipboardData?.files ?? [])];
      if (!files.length) return;
      event.preventDefault();
      this.addFiles(files);
    });
    const picker = h("input", {
      type: "file", multiple: true, class: "visually-hidden", id: uniqueId("images"),
      accept: Object.keys(IMAGE_TYPES).join(","),
    });
    picker.addEventListener("change", () => {
      this.addFiles([...picker.files]);
      picker.value = "";
    });
    this.thumbs = h("div", {class: "thumbs", role: "list", "aria-label": "Images to send"});
    this.sendButton = h("button", {type: "submit", class: "primary"}, "Send");
    this.stopButton = h("button", {type: "button", class: "danger", hidden: true,
      onclick: () => this.chat.controller?.abort()}, "Stop");
    this.imageHint = h("span", {class: "hint", id: uniqueId("composer-hint")});
    this.textarea.setAttribute("aria-describedby", this.imageHint.id);
    const form = h("form", {class: "composer", "aria-label": "Composer"},
      field("Message", this.textarea), this.thumbs,
      h("div", {class: "composer-actions"},
        h("span", {class: "file-pick"}, picker, h("label", {for: picker.id, class: "button"}, "Add images")),
        this.sendButton, this.stopButton),
      this.imageHint);
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      this.send();
    });
    this.acceptDrops(form);
    return form;
  }

  acceptDrops(target) {
    let depth = 0; // dragenter and dragleave fire for every child crossed
    target.addEventListener("dragenter", (event) => {
      if (!carriesFiles(event)) return;
      event.preventDefault();
      depth += 1;
      target.classList.add("dragging");
    });
    target.addEventListener("dragover", (event) => {
      if (!carriesFiles(event)) return;
      event.preventDefault();
      event.dataTransfer.dropEffect = "copy";
    });
    target.addEventListener("dragleave", () => {
      depth = Math.max(0, depth - 1);
      if (!depth) target.classList.remove("dragging");
    });
    target.addEventListener("drop", (event) => {
      event.preventDefault();
      depth = 0;
      target.classList.remove("dragging");
      this.addFiles([...(event.dataTransfer?.files ?? [])]);
    });
  }

  // Take the files that pass the page's checks; say why the others were left out.
  addFiles(files) {
    fill(this.notices);
    const images = this.chat.draft.images;
    const limit = this.model()?.max_images ?? 0;
    const problems = [];
    let over = 0;
    for (const file of files) {
      const problem = imageProblem(file);
      if (problem) problems.push(problem);
      else if (images.length >= limit) over += 1;
      else images.push(newImage(file));
    }
    if (over) problems.push(`${plural(over, "image was", "images were")} not added: ${this.imageLimit()}.`);
    for (const problem of problems) this.notices.append(alertBox(problem));
    this.renderDraft();
  }

  imageLimit() {
    const model = this.model();
    if (!model) return "no model is selected";
    const name = modelName(model.id);
    return model.max_images ? `${name} accepts at most ${plural(model.max_images, "image", "images")} per request`
      : `${name} does not accept images`;
  }

  renderDraft() {
    const images = this.chat.draft.images;
    fill(this.thumbs, images.map((image, index) => this.draftThumb(image, index)));
    this.thumbs.hidden = !images.length;
    const limit = this.model()?.max_images ?? 0;
    fill(this.imageHint,
      "Ctrl+Enter (⌘+Enter) sends; Enter starts a new line. ",
      limit ? `Drop, paste or add up to ${plural(limit, "image", "images")}: ${TYPE_NAMES}, at most `
        + `${formatBytes(MAX_IMAGE_BYTES)} each.` : "This model takes text only.");
  }

  draftThumb(image, index) {
    const number = index + 1;
    const detail = h("select", {id: uniqueId("detail")},
      DETAILS.map((value) => h("option", {value, selected: value === image.detail}, value)));
    detail.addEventListener("change", () => { image.detail = detail.value; });
    const remove = h("button", {type: "button", class: "small ghost", "aria-label": `Remove image ${number}`,
      onclick: () => this.removeImage(index)}, "Remove");
    return h("figure", {class: "thumb", role: "listitem"},
      h("img", {src: image.url, alt: `Image ${number}: ${image.name ?? "pasted"}`}),
      h("figcaption", {class: "muted", title: image.name ?? ""}, image.name ?? `image ${number}`,
        h("br"), formatBytes(image.size)),
      h("div", {class: "detail"},
        h("label", {for: detail.id}, "Detail", h("span", {class: "visually-hidden"}, ` of image ${number}`)),
        detail),
      remove);
  }

  removeImage(index) {
    const [image] = this.chat.draft.images.splice(index, 1);
    forgetImages([image]);
    this.renderDraft();
    const buttons = this.thumbs.querySelectorAll("button");
    (buttons[Math.min(index, buttons.length - 1)] ?? this.textarea).focus();
  }

  setRunning(running) {
    if (!running && document.activeElement === this.stopButton) this.textarea.focus();
    this.sendButton.disabled = running;
    this.stopButton.hidden = !running;
  }

  // -- the exchange -------------------------------------------------------------------------

  async send() {
    const {chat} = this;
    if (chat.controller) return;
    fill(this.notices);
    const model = this.model();
    const {text, images} = chat.draft;
    let problem = null;
    if (!model) problem = "Pick a model first.";
    else if (!text.trim() && !images.length) problem = "Write a message or add an image first.";
    else if (images.length > model.max_images) problem = `Too many images: ${this.imageLimit()}.`;
    if (problem) {
      this.notices.append(alertBox(problem));
      return;
    }
    const user = {role: "user", text, images};
    const answer = {role: "assistant", text: "", status: "streaming", model: model.id};
    chat.draft = {text: "", images: []};
    this.textarea.value = "";
    this.renderDraft();
    chat.turns.push(user, answer);
    this.messages.append(turnView(user), turnView(answer));
    answer.view.root.scrollIntoView({block: "nearest"});
    await this.stream(model, user, answer);
  }

  async stream(model, user, answer) {
    const {chat} = this;
    const controller = new AbortController();
    chat.controller = controller;
    this.setRunning(true);
    try {
      const body = {
        model: model.id,
        messages: await requestMessages(chat.system, chat.turns.slice(0, -1)),
        ...wireParameters(this.parameters()),
        stream: true,
        stream_options: {include_usage: true},
      };
      const started = performance.now();
      for await (const chunk of this.session.api.stream("/v1/chat/completions", body, controller.signal)) {
        const choice = chunk.choices?.[0];
        const delta = choice?.delta?.content;
        if (delta) {
          answer.ttft ??= performance.now() - started;
          answer.text += delta;
          answer.view.text.appendData(delta);
        }
        if (choice?.finish_reason) answer.finish = choice.finish_reason;
        if (chunk.usage) answer.usage = chunk.usage;
      }
      answer.status = "done";
    } catch (error) {
      if (!controller.signal.aborted) this.failed(user, answer, error);
      else if (answer.text) answer.status = "stopped";
      else this.stoppedBeforeTheAnswer(user, answer);
    } finally {
      chat.controller = null;
      this.setRunning(false);
      if (answer.view) showMeta(answer);
    }
  }

  // An answer that never began takes its question back to the composer, to be fixed and sent
  // again; one cut short stays in the conversation, marked.
  failed(user, answer, error) {
    const message = error instanceof ApiError ? error.describe() : String(error.message ?? error);
    this.notices.append(alertBox(message));
    if (answer.text) {
      answer.status = "error";
      answer.error = message;
    } else {
      this.takeBack(user, answer);
    }
  }

  // An empty answer cannot go back in the next request (the SDK refuses one, too).
  stoppedBeforeTheAnswer(user, answer) {
    this.notices.append(alertBox(
      "Stopped before the answer began: the message is back in the composer.", "notice"));
    this.takeBack(user, answer);
  }

  takeBack(user, answer) {
    const {chat} = this;
    user.view.root.remove();
    answer.view.root.remove();
    answer.view = null;
    const index = chat.turns.indexOf(user);
    if (index < 0) return; // "New chat" while it ran: the conversation is gone already
    chat.turns.splice(index, 2);
    if (!chat.draft.text && !chat.draft.images.length) {
      chat.draft = {text: user.text, images: user.images};
      this.textarea.value = user.text;
      this.renderDraft();
    } else {
      forgetImages(user.images);
    }
  }

  newChat() {
    const {chat} = this;
    chat.controller?.abort();
    forgetImages(chat.turns.flatMap((turn) => turn.images ?? []));
    chat.turns = [];
    fill(this.messages);
    fill(this.notices);
    this.textarea.focus();
  }

  openCode() {
    const {spec, images} = this.codeSpec();
    this.dialog.open(spec, images);
  }

  // The conversation so far and the message being written, as code.js describes it.
  codeSpec() {
    const {chat} = this;
    const turns = chat.turns.filter((turn) => turn.role === "user" || turn.status !== "streaming");
    const draft = chat.draft;
    if (draft.text.trim() || draft.images.length) turns.push({role: "user", ...draft});
    else if (turns.at(-1)?.role === "assistant") turns.pop(); // the last request sent
    if (!turns.length) turns.push({role: "user", text: "Hello!", images: []});
    const all = turns.flatMap((turn) => turn.images ?? []);
    const names = imageFileNames(all.map((image) => ({name: image.name, mime: image.mime})));
    const fileOf = new Map(all.map((image, index) => [image, names[index]]));
    const messages = turns.map((turn) => ({
      role: turn.role, text: turn.text,
      images: (turn.images ?? []).map((image) => ({file: fileOf.get(image), mime: image.mime, detail: image.detail})),
    }));
    if (chat.system.trim()) messages.unshift({role: "system", text: chat.system, images: []});
    const spec = {
      origin: location.origin, folderId: this.session.folderId,
      model: chat.modelId ?? "gpt://<folder>/<model>/latest", options: this.parameters(), messages,
    };
    return {spec, images: all.map((image) => ({image, file: fileOf.get(image)}))};
  }
}

// -- the request ----------------------------------------------------------------------------

// The conversation in the API's shape: each image stays in the message it was sent with.
async function requestMessages(system, turns) {
  const messages = system.trim() ? [{role: "system", content: system}] : [];
  for (const {role, text, images = []} of turns) {
    if (!images.length) {
      messages.push({role, content: text});
      continue;
    }
    const parts = text ? [{type: "text", text}] : [];
    for (const image of images) {
      parts.push({type: "image_url", image_url: {url: await dataUrlOf(image), detail: image.detail}});
    }
    messages.push({role, content: parts});
  }
  return messages;
}

function wireParameters({json, ...numbers}) {
  return json ? {...numbers, response_format: {type: "json_object"}} : numbers;
}

// -- views ----------------------------------------------------------------------------------

function turnView(turn) {
  const text = document.createTextNode(turn.text);
  const meta = h("div", {class: "meta"});
  const root = h("article", {class: `message ${turn.role}`},
    h("div", {class: "role"}, turn.role === "user" ? "You" : `Assistant · ${modelName(turn.model)}`),
    turn.images?.length ? h("div", {class: "thumbs"}, turn.images.map((image, index) =>
      h("figure", {class: "thumb"},
        h("img", {src: image.url, alt: `Image ${index + 1}: ${image.name ?? "pasted"}`}),
        h("figcaption", {class: "muted"}, `detail: ${image.detail}`)))) : null,
    h("div", {class: "content"}, text),
    meta);
  turn.view = {root, text, meta};
  if (turn.role === "assistant") showMeta(turn);
  return root;
}

function showMeta(turn) {
  const {root, meta} = turn.view;
  root.classList.toggle("stopped", turn.status === "stopped");
  root.classList.toggle("failed", turn.status === "error");
  if (turn.status === "streaming") root.setAttribute("aria-busy", "true");
  else root.removeAttribute("aria-busy");
  const items = [];
  if (turn.status === "streaming") items.push("Answering…");
  if (turn.status === "stopped") items.push(h("strong", {}, "Stopped"));
  if (turn.status === "error") items.push(h("strong", {}, `Cut short: ${turn.error}`));
  const usage = turn.usage;
  if (usage) {
    items.push(
      `Prompt tokens: ${usage.prompt_tokens}`,
      `Image tokens: ${usage.prompt_tokens_details?.image_tokens ?? 0}`,
      `Cached tokens: ${usage.prompt_tokens_details?.cached_tokens ?? 0}`,
      `Completion tokens: ${usage.completion_tokens}`);
  } else if (turn.status !== "streaming") {
    items.push("No usage reported");
  }
  if (turn.ttft !== undefined) items.push(`Time to first token: ${Math.round(turn.ttft)} ms`);
  if (turn.finish === "length") items.push("Cut at the max tokens limit");
  fill(meta, items.map((item) => h("span", {}, item)));
}

function modelAbout(model) {
  const facts = `${model.id} · context ${model.context_length} tokens · `
    + (model.vision ? `up to ${plural(model.max_images, "image", "images")}` : "text only");
  return [
    h("p", {class: "hint model-id"}, facts),
    model.demo ? h("div", {class: "alert warning demo-warning", role: "note"},
      // The shipped demo's description says what it is; another stand-in's might not.
      /^demo\b/i.test(model.description) ? model.description
        : [h("strong", {}, "A demo model: "), model.description || "its answers are not a real model's."])
      : null,
  ];
}

function modelName(uri) {
  return /^[a-z]+:\/\/[^/]+\/([^/]+)/.exec(uri ?? "")?.[1] ?? uri;
}

function plural(count, one, many) {
  return `${count} ${count === 1 ? one : many}`;
}

