// Small DOM helpers: text only (API data never goes through innerHTML).

export const $ = (selector, root = document) => root.querySelector(selector);

/** Create an element: el("td", {class: "num"}, "text", childNode, …). */
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value == null || value === false) continue;
    if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else node.setAttribute(name, value === true ? "" : String(value));
  }
  node.append(...children.flat().filter((c) => c != null));
  return node;
}

export const code = (text) => el("code", {}, text);

/** Show an error's words (`detail`) in a section's alert line; null hides it. */
export function showError(section, err) {
  const line = section.querySelector(":scope > .error");
  line.hidden = !err;
  line.textContent = err ? err.message || String(err) : "";
}

/** Show an empty-state message (text and <code> parts) in a section; null hides it. */
export function showEmpty(section, parts) {
  const box = section.querySelector(":scope > .empty");
  box.hidden = !parts;
  box.replaceChildren(...(parts || []));
}

export function setText(selector, text) {
  $(selector).textContent = text;
}
