// The page's entry point: the API key form, the tabs, and the two tabs' controllers.

import { QUERY_BASE, apiKey, forgetApiKey, setApiKey } from "./api.js";
import { initAdmin, setCollectionNames } from "./admin.js";
import { initAsk, loadCollections } from "./ask.js";

const $ = (id) => document.getElementById(id);

function showKeyState() {
  const key = apiKey();
  $("key-status").textContent = key
    ? `A key ending in “${key.slice(-4)}” is in use in this tab only.`
    : "No key yet: enter your API key.";
  $("api-key").placeholder = key ? "•••••• (set)" : "";
}

function initKeyForm() {
  $("key-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const key = $("api-key").value.trim();
    if (!key) return;
    setApiKey(key);
    $("api-key").value = "";
    showKeyState();
    loadCollections();
  });
  $("forget-key").addEventListener("click", () => {
    forgetApiKey();
    showKeyState();
    loadCollections();
  });
  showKeyState();
}

// WAI-ARIA tabs: arrow keys, Home and End move between tabs; the selected one is in the tab order
function initTabs() {
  const tabs = [...document.querySelectorAll('[role="tab"]')];
  const select = (tab) => {
    for (const other of tabs) {
      const selected = other === tab;
      other.setAttribute("aria-selected", String(selected));
      other.tabIndex = selected ? 0 : -1;
      $(other.getAttribute("aria-controls")).hidden = !selected;
    }
  };
  tabs.forEach((tab, i) => {
    tab.addEventListener("click", () => select(tab));
    tab.addEventListener("keydown", (event) => {
      const moves = { ArrowRight: i + 1, ArrowLeft: i - 1, Home: 0, End: tabs.length - 1 };
      if (!(event.key in moves)) return;
      event.preventDefault();
      const next = tabs[(moves[event.key] + tabs.length) % tabs.length];
      select(next);
      next.focus();
    });
  });
}

async function loadConfig() {
  try {
    const response = await fetch(`${QUERY_BASE}/ui/config.json`, { cache: "no-store" });
    if (response.ok) return await response.json();
  } catch {
    // offline or the service is gone: the page still works for asking
  }
  return { indexing_url: null, answer_mode: null };
}

async function main() {
  initKeyForm();
  initTabs();
  initAsk({ collectionsChanged: setCollectionNames });
  const config = await loadConfig();
  if (config.answer_mode) {
    $("answer-mode").options[0].textContent = `Server default (${config.answer_mode})`;
  }
  initAdmin(config, { uploaded: loadCollections });
  await loadCollections();
  document.body.dataset.ready = "true";
}

main();
