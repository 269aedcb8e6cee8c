// The API keys page: the folder's service accounts and their keys, from the IAM API; create a
// key with scopes and an expiry (its secret is shown once, here, and kept nowhere), revoke one.
import {alertBox, field, fill, h} from "./dom.js";
import {confirmAction, describeError, formatIsoTime, isForbidden, permissionNotice} from "./console.js";

// Fovea's scopes (fovea/iam/apikeys.py's Scope), with what each lets a key do.
const SCOPES = [
  ["yc.ai.foundationModels.execute", "use the models: chat completions, the cloud's SDK", true],
  ["yc.ai.languageModels.execute", "the same, by the cloud's older name", false],
  ["yc.iam.manage", "the IAM API: folders, service accounts, roles and keys", false],
];
const MANAGE_NEEDS = "Managing keys needs a key with the scope yc.iam.manage whose service " +
  "account has the role ai.admin on the folder.";

export async function render(root, session) {
  const page = new KeysPage(root, session);
  await page.start();
}

class KeysPage {
  constructor(root, session) {
    this.view = root.appendChild(h("div", {class: "console"}));
    this.session = session;
    this.api = session.api;
    this.ownKeyId = session.api.key.split(".")[1] ?? null;
    this.accounts = [];
    this.secretBox = h("div");
    this.status = h("div", {"aria-live": "polite"});
    this.lists = h("div");
  }

  async start() {
    const title = h("h1", {}, "API keys");
    const intro = h("p", {class: "muted"},
      "A key belongs to a service account: the account's roles on the folder say what it may ",
      "do, the key's scopes what it may be used for.");
    if (!this.session.folderId) {
      fill(this.view, title, intro, alertBox("This key names no folder to manage.", "notice"));
      return;
    }
    fill(this.view, title, intro, h("p", {class: "muted"}, "Loading the folder's keys…"));
    try {
      this.accounts = await this.listAccounts();
    } catch (error) {
      const notice = isForbidden(error)
        ? permissionNotice("manage API keys", error, MANAGE_NEEDS)
        : alertBox(describeError(error));
      fill(this.view, title, intro, notice);
      return;
    }
    fill(this.view, title, intro, this.renderForm(), this.secretBox, this.status, this.lists);
    await this.showKeys();
  }

  async listAccounts() {
    const answer = await this.api.get("/iam/v1/serviceAccounts", {folderId: this.session.folderId});
    return answer.serviceAccounts;
  }

  // -- creating a key --------------------------------------------------------------------

  renderForm() {
    const account = h("select", {name: "serviceAccountId"},
      this.accounts.map((a) => h("option", {value: a.id}, `${a.name} (${a.id})`)));
    const description = h("input", {type: "text", name: "description", maxlength: 256,
      autocomplete: "off"});
    const scopes = SCOPES.map(([scope, , checked]) => h("input", {
      type: "checkbox", name: "scopes", value: scope, checked}));
    const expires = h("input", {type: "datetime-local", name: "expiresAt"});
    const status = h("div", {"aria-live": "polite"});
    const create = h("button", {type: "submit", class: "primary"}, "Create key");
    const form = h("form", {class: "card", "aria-labelledby": "new-key-title"},
      h("h2", {id: "new-key-title"}, "Create a key"),
      h("div", {class: "grid-2"},
        field("Service account", account),
        field("Description", description, "What the key is for, e.g. who holds it.")),
      h("fieldset", {class: "scopes"},
        h("legend", {}, "Scopes"),
        SCOPES.map(([scope, meaning], index) => h("label", {class: "check"}, scopes[index],
          h("span", {}, h("code", {}, scope), h("span", {class: "hint"}, ` ${meaning}`))))),
      field("Expires (optional)", expires, "Your local time; empty: the key never expires."),
      status,
      h("div", {class: "actions"}, create));
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      create.disabled = true;
      fill(status);
      try {
        const created = await this.api.post("/iam/v1/apiKeys", {
          serviceAccountId: account.value,
          description: description.value.trim(),
          scopes: scopes.filter((box) => box.checked).map((box) => box.value),
          expiresAt: expires.value ? new Date(expires.value).toISOString() : null,
        });
        form.reset(); // the next key starts from the defaults again
        // The cloud's CreateApiKeyResponse: {apiKey, secret}, the secret's only appearance.
        this.showSecret(created);
        await this.showKeys();
      } catch (error) {
        fill(status, alertBox(describeError(error)));
      } finally {
        create.disabled = false;
      }
    });
    return form;
  }

  // The secret, once: it lives in this box only until "Done" or leaving the page.
  showSecret({apiKey, secret}) {
    const value = h("code", {class: "secret", id: "new-key-secret"}, secret);
    const copied = h("span", {class: "hint", "aria-live": "polite"});
    const copy = h("button", {type: "button", onclick: () => copySecret(secret, value, copied)}, "Copy");
    const done = h("button", {type: "button", class: "ghost", onclick: () => fill(this.secretBox)},
      "Done, hide it");
    const box = h("section", {class: "card secret-box", tabindex: -1, "aria-labelledby": "secret-title"},
      h("h2", {id: "secret-title"}, "Secret of the new key — shown once"),
      h("p", {}, `Key ${apiKey.id} was created. Copy its secret now: `,
        h("strong", {}, "it will not be shown again"),
        ", and Fovea keeps only its hash. Clients send it as ",
        h("code", {}, "Authorization: Bearer <secret>"), "."),
      value,
      h("div", {class: "actions"}, copy, done, copied));
    fill(this.secretBox, box);
    box.focus();
  }

  // -- the lists -------------------------------------------------------------------------

  async showKeys() {
    fill(this.status);
    try {
      this.accounts = await this.listAccounts();
      const keyLists = await Promise.all(this.accounts.map((a) =>
        this.api.get("/iam/v1/apiKeys", {serviceAccountId: a.id})));
      fill(this.lists, this.accounts.map((a, index) => this.accountSection(a, keyLists[index].apiKeys)));
    } catch (error) {
      fill(this.status, alertBox(describeError(error)));
    }
  }

  accountSection(account, keys) {
    const titleId = `account-${account.id}`;
    return h("section", {class: "card", "aria-labelledby": titleId},
      h("h2", {id: titleId}, account.name, " ", h("code", {class: "muted small"}, account.id)),
      account.description ? h("p", {class: "muted"}, account.description) : null,
      keys.length
        ? h("div", {class: "table-wrap"},
          h("table", {class: "keys"},
            h("thead", {}, h("tr", {},
              ["Key", "Description", "Scopes", "Created", "Last used", "Expires", "State", "Actions"]
                .map((name) => h("th", {scope: "col"}, name)))),
            h("tbody", {}, keys.map((key) => this.keyRow(key)))))
        : h("p", {class: "muted"}, "No keys."));
  }

  keyRow(key) {
    const own = key.id === this.ownKeyId;
    const revoke = key.revokedAt ? h("span", {class: "muted"}, "–") : h("button", {
      type: "button", class: "small danger", "aria-label": `Revoke ${key.id}`,
      onclick: () => this.revoke(key, own)}, "Revoke");
    return h("tr", {dataset: {keyId: key.id}},
      h("td", {}, h("code", {}, key.id), own ? h("div", {class: "hint"}, "this page's key") : null),
      h("td", {}, key.description || h("span", {class: "muted"}, "–")),
      h("td", {}, h("ul", {class: "plain"}, key.scopes.map((scope) => h("li", {}, h("code", {}, scope))))),
      h("td", {class: "nowrap"}, formatIsoTime(key.createdAt)),
      h("td", {class: "nowrap"}, formatIsoTime(key.lastUsedAt)),
      h("td", {class: "nowrap"}, key.expiresAt ? formatIsoTime(key.expiresAt) : "never"),
      h("td", {}, keyState(key)),
      h("td", {}, revoke));
  }

  async revoke(key, own) {
    const warning = own ? " It is the key this page signed in with: the page will stop working." : "";
    const confirmed = await confirmAction(
      `Revoke ${key.id}? Clients using it are refused from the next request on.${warning}`,
      "Revoke key");
    if (!confirmed) return;
    fill(this.status);
    try {
      await this.api.delete(`/iam/v1/apiKeys/${encodeURIComponent(key.id)}`);
      fill(this.status, alertBox(`Revoked ${key.id}.`, "ok"));
    } catch (error) {
      fill(this.status, alertBox(describeError(error)));
      return;
    }
    if (!own) await this.showKeys();
  }
}

function keyState(key) {
  if (key.revokedAt) {
    return h("span", {class: "status status-revoked"}, `revoked ${formatIsoTime(key.revokedAt)}`);
  }
  if (key.expiresAt && new Date(key.expiresAt) <= new Date()) {
    return h("span", {class: "status status-expired"}, "expired");
  }
  return h("span", {class: "status status-active"}, "active");
}

async function copySecret(secret, element, feedback) {
  try {
    await navigator.clipboard.writeText(secret);
    fill(feedback, "Copied.");
  } catch {
    // No clipboard access (an insecure origin, a denied permission): select it for the user.
    getSelection().selectAllChildren(element);
    fill(feedback, "Selected: press Ctrl+C (⌘C) to copy.");
  }
}
