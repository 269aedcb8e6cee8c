// "Show code": the conversation as a Python program with the openai client, as curl, and
// with the cloud's SDK (code.js writes them), in a dialog with a tab for each and a Copy button.
import {curlCode, KEY_VARIABLE, pythonCode, sdkCode} from "./code.js";
import {fill, h, saveBlob, uniqueId} from "./dom.js";

export class CodeDialog {
  constructor() {
    this.codeFiles = h("div", {class: "code-files"});
    const tabs = [["python", "Python"], ["curl", "curl"], ["sdk", "SDK"]];
    this.codePanels = {};
    const tabList = h("div", {role: "tablist", "aria-label": "Language"});
    const dialog = h("dialog", {class: "code-dialog", "aria-labelledby": uniqueId("code-title")});
    const panels = tabs.map(([name, label], index) => {
      const tab = h("button", {type: "button", role: "tab", id: uniqueId("tab"),
        "aria-selected": index === 0 ? "true" : "false", tabindex: index === 0 ? "0" : "-1"}, label);
      const panel = this.codePanel(name, tab);
      tab.setAttribute("aria-controls", panel.id);
      tab.addEventListener("click", () => selectTab(tabList, tab));
      tabList.append(tab);
      return panel;
    });
    tabList.addEventListener("keydown", (event) => moveTab(tabList, event));
    const close = h("button", {type: "button", class: "small", onclick: () => dialog.close()}, "Close");
    dialog.append(
      h("div", {class: "dialog-head"},
        h("h2", {id: dialog.getAttribute("aria-labelledby")}, "Code for this conversation"), close),
      h("p", {class: "hint"}, "The key is not in the code: each program reads it from the ",
        h("code", {}, KEY_VARIABLE), " environment variable (", h("code", {}, `export ${KEY_VARIABLE}=fva.…`),
        "). Images are read from files next to the program."),
      this.codeFiles, tabList, ...panels);
    dialog.addEventListener("close", () => this.showCodeButton?.focus());
    this.element = dialog;
  }

  codePanel(name, tab) {
    const code = h("code");
    const status = h("span", {class: "hint", role: "status"});
    const copy = h("button", {type: "button", class: "small", onclick: async () => {
      if (await copyText(code.textContent)) {
        fill(status, "Copied.");
      } else {
        getSelection().selectAllChildren(code); // the clipboard is refused: Ctrl+C does it
        fill(status, "Selected: press Ctrl+C (⌘+C) to copy.");
      }
    }}, "Copy");
    const how = {
      python: ["pip install openai; save as chat.py; run python chat.py"],
      curl: ["Run in bash (", h("code", {}, "base64 -w0"), " is GNU's; on macOS write ",
        h("code", {}, "base64 -i"), ")"],
      sdk: ["pip install yandex-ai-studio-sdk; save as chat_sdk.py; run python chat_sdk.py"],
    }[name];
    const panel = h("div", {role: "tabpanel", id: uniqueId("panel"), "aria-labelledby": tab.id,
      hidden: tab.getAttribute("aria-selected") !== "true"},
      h("div", {class: "actions code-actions"}, copy, h("span", {class: "hint"}, how), status),
      h("pre", {tabindex: "0", "aria-label": `${tab.textContent} code`}, code));
    this.codePanels[name] = code;
    return panel;
  }

  // Show the code of `spec` (code.js's shape); `images` are {image, file} to save beside it.
  open(spec, images) {
    this.showCodeButton = document.activeElement;
    fill(this.codePanels.python, pythonCode(spec));
    fill(this.codePanels.curl, curlCode(spec));
    fill(this.codePanels.sdk, sdkCode(spec));
    fill(this.codeFiles, images.length ? [
      h("p", {}, "Save these images next to the program: ",
        images.map(({file}, index) => [index ? ", " : "", h("code", {}, file)])),
      h("button", {type: "button", class: "small", onclick: () => {
        for (const {file, image} of images) saveBlob(image.blob, file);
      }}, "Download images"),
    ] : null);
    for (const node of this.element.querySelectorAll("[role=status]")) fill(node);
    this.element.showModal();
  }
}

function selectTab(tabList, chosen) {
  for (const tab of tabList.querySelectorAll("[role=tab]")) {
    const selected = tab === chosen;
    tab.setAttribute("aria-selected", String(selected));
    tab.tabIndex = selected ? 0 : -1;
    document.getElementById(tab.getAttribute("aria-controls")).hidden = !selected;
  }
  chosen.focus();
}

// Arrow keys, Home and End move between tabs (the WAI-ARIA tabs pattern).
function moveTab(tabList, event) {
  const tabs = [...tabList.querySelectorAll("[role=tab]")];
  const current = tabs.indexOf(document.activeElement);
  const next = {
    ArrowRight: current + 1, ArrowLeft: current - 1 + tabs.length, Home: 0, End: tabs.length - 1,
  }[event.key];
  if (next === undefined || current < 0) return;
  event.preventDefault();
  selectTab(tabList, tabs[next % tabs.length]);
}

async function copyText(text) {
  try {
    await navigator.clipboard.writeText(text);
    return true;
  } catch {
    return false;
  }
}
