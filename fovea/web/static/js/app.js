// The page's shell: sign-in with an API key (kept in session storage only), the pages, the theme.
import {Api, ApiError, folderOfModel} from "./api.js";
import {alertBox, field, fill, h} from "./dom.js";

const KEY_STORAGE = "fovea.apiKey";
const FOLDER_STORAGE = "fovea.folderId";
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

// What every page gets: the API client, the folder, the models the key may list.
export class Session {
  constructor(key, folderId, models) {
    this.api = new Api(key);
    this.folderId = folderId;
    this.models = models;
  }
}

async function signIn(key, folderHint) {
  const api = new Api(key);
  let models = [];
  let folderId = folderHint || null;
  try {
    models = (await api.get("/v1/models")).data;
    folderId = folderId || (models.length ? folderOfModel(models[0].id) : null);
  } catch (error) {
    // A key without the right to list models (an IAM-only key) still signs in.
    if (!(error instanceof ApiError) || error.status !== 403) throw error;
  }
  if (!folderId) {
    try {
      const folders = (await api.get("/resource-manager/v1/folders")).folders;
      folderId = folders.length ? folders[0].id : null;
    } catch {
      folderId = null;
    }
  }
  return new Session(key, folderId, models);
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
      if (session.folderId) sessionStorage.setItem(FOLDER_STORAGE, session.folderId);
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
  sessionStorage.removeItem(FOLDER_STORAGE);
  session = null;
  location.hash = "";
  route();
}

function currentPage() {
  const name = location.hash.replace(/^#\/?/, "").split("/")[0];
  return PAGES[name] ? name : DEFAULT_PAGE;
}

async function route() {
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
  fill(view);
  cleanup = (await module.render(view, session)) ?? null;
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
      session = await signIn(key, sessionStorage.getItem(FOLDER_STORAGE));
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
