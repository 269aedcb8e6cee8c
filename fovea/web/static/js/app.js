// The page's shell: sign-in with an API key (kept in session storage only), the pages, the theme.
import {Api, ApiError} from "./api.js";
import {alertBox, field, fill, h} from "./dom.js";

const KEY_STORAGE = "fovea.apiKey";
const THEME_STORAGE = "fovea.theme";

// Each page is a module exporting render(root, session) -> optional cleanup function.
const PAGES = {
  playground: {title: "Playground", load: () => import("./chat.js")},
  batches: {title: "Batches", load: () => import("./batches.js")},
  usage: {title: "Usage", load: () => import("./usage.js")},
  keys: {title: "API keys", load: () => import("./keys.js")},
};
const DEFAULT_PAGE = location.pathname.startsWith("/console") ? "batches" : "playground";

let session = null;
let cleanup = null;
// Bumped by every navigation: a page still loading when the user moved on is dropped.
let navigation = 0;

// What every page gets: the API client, what the key is and may do (GET /v1/me), its folder,
// the models it may list.
export class Session {
  constructor(key, identity, models) {
    this.api = new Api(key);
    this.identity = identity;
    this.folderId = identity.folder_id;
    this.models = models;
  }

  // A permission as /v1/me names it: "batches.write", "usage.read", "iam.admin".
  can(permission) {
    return this.identity.permissions.includes(permission);
  }
}

async function signIn(key) {
  const api = new Api(key);
  const identity = await api.get("/v1/me");
  // The playground and batches speak chat: embedding models (kind "embedding") are left out.
  const models = identity.permissions.includes("models.read")
    ? (await api.get("/v1/models")).data.filter((model) => (model.kind ?? "chat") === "chat")
    : [];
  return new Session(key, identity, models);
}

function renderSignIn(view, message) {
  const keyInput = h("input", {
    type: "password", name: "api-key", autocomplete: "off", spellcheck: "false", required: true,
    placeholder: "fva.…",
  });
  const status = h("div");
  if (message) status.append(alertBox(message));
  const form = h("form", {class: "card narrow", "aria-labelledby": "sign-in-title"},
    h("h1", {id: "sign-in-title"}, "Sign in"),
    h("p", {class: "muted"},
      "The key stays in this tab's session storage and goes only to this server's API, ",
      "as a client would send it. ",
      h("code", {}, "make run"), " prints one; ", h("code", {}, "fovea iam key create"), " makes more."),
    field("API key", keyInput),
    status,
    h("div", {class: "actions"}, h("button", {type: "submit", class: "primary"}, "Sign in")),
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const button = form.querySelector("button[type=submit]");
    button.disabled = true;
    fill(status);
    try {
      session = await signIn(keyInput.value.trim());
      sessionStorage.setItem(KEY_STORAGE, keyInput.value.trim());
      route();
    } catch (error) {
      fill(status, alertBox(error instanceof ApiError ? error.describe() : String(error)));
    } finally {
      button.disabled = false;
    }
  });
  fill(view, form);
  keyInput.focus();
}

function signOut() {
  sessionStorage.removeItem(KEY_STORAGE);
  session = null;
  location.hash = "";
  route();
}

function currentPage() {
  const name = location.hash.replace(/^#\/?/, "").split("/")[0];
  return PAGES[name] ? name : DEFAULT_PAGE;
}

async function route() {
  navigation += 1;
  const current = navigation;
  const view = document.getElementById("view");
  const nav = document.getElementById("nav");
  if (cleanup) {
    cleanup();
    cleanup = null;
  }
  if (!session) {
    nav.hidden = true;
    document.getElementById("sign-out").hidden = true;
    fill(document.getElementById("who"));
    document.title = "Sign in · Fovea";
    renderSignIn(view);
    return;
  }
  nav.hidden = false;
  document.getElementById("sign-out").hidden = false;
  fill(document.getElementById("who"), session.folderId ? `folder ${session.folderId}` : "");
  const name = currentPage();
  for (const link of nav.querySelectorAll("a")) {
    if (link.dataset.page === name) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  document.title = `${PAGES[name].title} · Fovea`;
  const module = await PAGES[name].load();
  if (current !== navigation) return;
  fill(view);
  const done = (await module.render(view, session)) ?? null;
  if (current === navigation) cleanup = done;
  else if (done) done(); // the user left while it loaded
}

function applyTheme(theme) {
  const dark = theme === "dark" ||
    (theme !== "light" && matchMedia("(prefers-color-scheme: dark)").matches);
  document.documentElement.dataset.theme = dark ? "dark" : "light";
  const button = document.getElementById("theme");
  button.setAttribute("aria-label", dark ? "Switch to the light theme" : "Switch to the dark theme");
  button.title = button.getAttribute("aria-label");
}

function toggleTheme() {
  const next = document.documentElement.dataset.theme === "dark" ? "light" : "dark";
  localStorage.setItem(THEME_STORAGE, next);
  applyTheme(next);
}

async function start() {
  applyTheme(localStorage.getItem(THEME_STORAGE));
  document.getElementById("theme").addEventListener("click", toggleTheme);
  document.getElementById("sign-out").addEventListener("click", signOut);
  window.addEventListener("hashchange", () => route());
  const key = sessionStorage.getItem(KEY_STORAGE);
  if (key) {
    try {
      session = await signIn(key);
    } catch (error) {
      sessionStorage.removeItem(KEY_STORAGE);
      renderSignIn(document.getElementById("view"),
        error instanceof ApiError ? error.describe() : String(error));
      return;
    }
  }
  route();
}

start();
