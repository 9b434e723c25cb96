// The page's languages: English (the source text) and Korean. The catalog of a language maps each
// English message to its translation (messages-ko.js); English needs none. Static text in index.html
// is translated in place (each node remembers its English source), text the modules write goes
// through t(). The language is the `locale` setting, else this browser's choice, else the browser's.

import KO from "./messages-ko.js";

export const LANGUAGES = { en: "English", ko: "한국어" };
const CATALOGS = { en: {}, ko: KO };
const LANG_KEY = "billing.language";
const TZ_KEY = "billing.timeZone";

export const prefs = {
  lang: pickLanguage(localStorage.getItem(LANG_KEY) || navigator.language),
  timeZone: localStorage.getItem(TZ_KEY) || browserTimeZone(),
};

export function browserTimeZone() {
  return Intl.DateTimeFormat().resolvedOptions().timeZone || "UTC";
}

export function pickLanguage(tag) {
  const base = String(tag || "").toLowerCase().split("-")[0];
  return base in CATALOGS ? base : "en";
}

/** The message in the page's language, with {name} filled from `values`. */
export function t(message, values = {}) {
  const text = CATALOGS[prefs.lang][message] ?? message;
  return text.replace(/\{(\w+)\}/g, (m, name) => (name in values ? String(values[name]) : m));
}

const ATTRS = ["aria-label", "placeholder", "alt"];
const SKIP = "script, style, .mono, [translate=no], [data-no-i18n]";

/** Puts the static text under `root` in the page's language. */
export function translateDom(root = document.body) {
  const walker = document.createTreeWalker(root, NodeFilter.SHOW_TEXT);
  for (let node = walker.nextNode(); node; node = walker.nextNode()) {
    if (node.parentElement?.closest(SKIP)) continue;
    if (node.msgid === undefined) {
      const source = node.nodeValue.trim();
      if (!source || !/[A-Za-z]/.test(source)) continue;
      node.msgid = source;
    }
    const value = node.nodeValue;
    const lead = value.match(/^\s*/)[0];
    const tail = value.match(/\s*$/)[0];
    node.nodeValue = `${lead}${t(node.msgid)}${tail}`;
  }
  for (const el of root.querySelectorAll(ATTRS.map((a) => `[${a}]`).join(","))) {
    el.msgAttrs ??= {};
    for (const a of ATTRS) {
      if (!el.hasAttribute(a) || el.closest("[data-no-i18n]")) continue;
      el.msgAttrs[a] ??= el.getAttribute(a);
      el.setAttribute(a, t(el.msgAttrs[a]));
    }
  }
  document.documentElement.lang = prefs.lang;
  document.title = t("Credit usage");
  const help = document.getElementById("help-link"); // the help page (help.html) in the same language
  if (help) help.setAttribute("href", `page/help.html#${prefs.lang}`);
}

export function setLanguage(lang) {
  prefs.lang = pickLanguage(lang);
  localStorage.setItem(LANG_KEY, prefs.lang);
}

export function setTimeZone(zone) {
  prefs.timeZone = zone || browserTimeZone();
  localStorage.setItem(TZ_KEY, prefs.timeZone);
}

/** The Intl locale of the page's language. */
export const intlLocale = () => (prefs.lang === "ko" ? "ko-KR" : "en-US");
