// What the console pages (batches, usage, API keys) share: telling a key's missing right
// from a failure, confirmations, numbers.
import {ApiError} from "./api.js";
import {alertBox, h, uniqueId} from "./dom.js";

export function isForbidden(error) {
  return error instanceof ApiError && error.status === 403;
}

export function describeError(error) {
  return error instanceof ApiError ? error.describe() : String(error);
}

// A page the key may not use, said instead of failing: what it may not do, the server's 403
// in its own words, then what would allow it.
export function permissionNotice(what, error, allowedBy) {
  return alertBox(
    h("div", {},
      h("strong", {}, `This key may not ${what}. `),
      h("span", {class: "server-words"}, error.message),
      allowedBy ? h("p", {class: "notice-hint"}, allowedBy) : null),
    "notice",
  );
}

// A modal yes/no question; resolves true when the user confirms. Escape or "Keep" says no.
export function confirmAction(question, confirmLabel, {keepLabel = "Keep"} = {}) {
  return new Promise((resolve) => {
    const titleId = uniqueId("confirm");
    const keep = h("button", {type: "button"}, keepLabel);
    const yes = h("button", {type: "button", class: "danger"}, confirmLabel);
    const dialog = h("dialog", {class: "confirm", "aria-labelledby": titleId},
      h("p", {id: titleId}, question),
      h("div", {class: "actions"}, yes, keep));
    const opener = document.activeElement;
    const finish = (answer) => {
      dialog.close();
      dialog.remove();
      if (opener?.isConnected) opener.focus(); // back where the keyboard user was
      resolve(answer);
    };
    keep.addEventListener("click", () => finish(false));
    yes.addEventListener("click", () => finish(true));
    dialog.addEventListener("cancel", (event) => {
      event.preventDefault();
      finish(false);
    });
    document.body.append(dialog);
    dialog.showModal();
    keep.focus();
  });
}

const NUMBER = new Intl.NumberFormat("en-US");

export function formatNumber(value) {
  return NUMBER.format(value ?? 0);
}

// An RFC 3339 time of the IAM API, in the reader's locale.
export function formatIsoTime(value) {
  return value ? new Date(value).toLocaleString() : "–";
}
