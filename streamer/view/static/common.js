"use strict";
// What the dashboard and the account page share: the token, API calls, DOM and SVG builders,
// number formats and chart axes. Every string from the API goes into the page as text, never as HTML.
const HS = (function () {
  const SVG_NS = "http://www.w3.org/2000/svg";

  // A bearer token given as ?access_token= is kept for this tab and removed from the address bar.
  let token = null;
  const query = new URLSearchParams(window.location.search);
  if (query.has("access_token")) {
    token = query.get("access_token");
    window.sessionStorage.setItem("healthstream-token", token);
    query.delete("access_token");
    const rest = query.toString();
    window.history.replaceState(null, "", window.location.pathname + (rest ? "?" + rest : ""));
  } else {
    token = window.sessionStorage.getItem("healthstream-token");
  }

  function headers(extra) {
    return Object.assign(token ? { Authorization: "Bearer " + token } : {}, extra || {});
  }

  async function api(path, options) {
    const init = Object.assign({ cache: "no-store" }, options || {});
    init.headers = headers(init.headers);
    const response = await fetch(path, init);
    let body = {};
    try {
      body = await response.json();
    } catch (ignored) {
      body = {};
    }
    if (!response.ok && path !== "/healthz") {
      const problem = new Error(path + ": " + (body.error || response.status + " " + response.statusText));
      // what the API said on its own, for a page that names the list or filter it refused
      problem.status = response.status;
      problem.detail = body.error || response.status + " " + response.statusText;
      throw problem;
    }
    return body;
  }

  // A CSV link: a plain link without a token; with one, the file is fetched with the header and
  // saved as `fileName` (default: the path's last part), so two lists of one endpoint differ.
  function csvLink(path, label, fileName) {
    const name = fileName || (path.split("?")[0].split("/").pop() || "export") + ".csv";
    const link = node("a", { href: path, class: "csv", download: fileName || "" }, [label || "CSV"]);
    link.addEventListener("click", async function (event) {
      if (!token) return;
      event.preventDefault();
      const response = await fetch(path, { headers: headers(), cache: "no-store" });
      if (!response.ok) {  // not a CSV: say why on the link rather than save the error as a .csv
        const body = await response.json().catch(() => ({}));
        link.textContent = "CSV failed";
        link.title = body.error || response.status + " " + response.statusText;
        return;
      }
      const blob = await response.blob();
      const url = URL.createObjectURL(blob);
      const temporary = node("a", { href: url, download: name });
      document.body.append(temporary);
      temporary.click();
      temporary.remove();
      URL.revokeObjectURL(url);
    });
    return link;
  }

  function node(tag, attrs, children) {
    const element = document.createElement(tag);
    for (const [name, value] of Object.entries(attrs || {})) {
      if (value !== null && value !== undefined) element.setAttribute(name, String(value));
    }
    for (const child of children || []) {
      element.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return element;
  }

  // Text a person or an import wrote (a name, owner, reason, comment, author) in a <bdi>: its
  // direction is its own, and a stray U+202E in it reverses it alone, not the rest of the line.
  function userText(value, attrs) {
    return node("bdi", attrs, [value === null || value === undefined ? "" : String(value)]);
  }

  function svgNode(tag, attrs, text) {
    const element = document.createElementNS(SVG_NS, tag);
    for (const [name, value] of Object.entries(attrs || {})) element.setAttribute(name, String(value));
    if (text !== undefined) element.textContent = String(text);
    return element;
  }

  // Money arrives as exact decimal strings: group the digits without going through a float.
  function money(text) {
    if (text === null || text === undefined) return "–";
    text = String(text);
    const negative = text.startsWith("-");
    const [whole, cents] = (negative ? text.slice(1) : text).split(".");
    const grouped = whole.replace(/\B(?=(\d{3})+(?!\d))/g, ",");
    return (negative ? "-" : "") + grouped + (cents !== undefined ? "." + cents : "");
  }
  function fixed(value, digits) {
    return value === null || value === undefined ? "–" : Number(value).toFixed(digits);
  }
  function percent(value) {
    return value === null || value === undefined ? "–" : (100 * value).toFixed(1) + "%";
  }
  function day(text) {
    return text ? text.slice(0, 10) : "–";
  }
  function minute(text) {
    return text ? text.slice(0, 16).replace("T", " ") : "–";
  }
  // The API's times are UTC: one shown on its own says so (in a table, its column's heading does).
  function utc(text) {
    return text ? minute(text) + " UTC" : "–";
  }
  // The time of day now, in UTC as every other time on the pages.
  function clock() {
    return new Date().toISOString().slice(11, 19);
  }
  // "1 account", "2 accounts".
  function count(number, one, many) {
    return number + " " + (number === 1 ? one : many || one + "s");
  }
  // Axis numbers: 1,250 · 12.5k · 1.2M.
  function short(value) {
    const size = Math.abs(value);
    if (size >= 1e6) return (value / 1e6).toFixed(size >= 1e7 ? 0 : 1).replace(/\.0$/, "") + "M";
    if (size >= 1e4) return (value / 1e3).toFixed(size >= 1e5 ? 0 : 1).replace(/\.0$/, "") + "k";
    return money(String(Math.round(value)));
  }

  // Round tick values from at most `low` to at least `high`: steps of 1, 2, 2.5 or 5 times a power of ten,
  // and at least `minStep` (1 for money axes, whose labels are whole units: a step of 0.5 would print
  // "+1, +1, 0, 0, -1").
  function niceTicks(low, high, count, minStep) {
    if (!(high > low)) high = low + 1;
    const raw = Math.max((high - low) / Math.max(count, 1), minStep || 0);
    const power = Math.pow(10, Math.floor(Math.log10(raw)));
    const step = [1, 2, 2.5, 5, 10].map((m) => m * power).find((s) => s >= raw) || raw;
    const ticks = [Number((Math.floor(low / step) * step).toFixed(10))];
    while (ticks[ticks.length - 1] < high - step * 1e-9) {
      ticks.push(Number((ticks[ticks.length - 1] + step).toFixed(10)));
    }
    return { ticks: ticks, low: ticks[0], high: ticks[ticks.length - 1] };
  }

  // The fewest decimals (at most 4) that print each of `values` as it is: ticks of 0.25 print
  // "99.75" and "100.00", not "99.8" and "100".
  function decimals(values) {
    for (let places = 0; places < 4; places++) {
      if (values.every((value) => Math.abs(Number(value.toFixed(places)) - value) < 1e-9)) return places;
    }
    return 4;
  }

  // A chart with nothing to draw says so, rather than draw axes of made-up values.
  function noData(svg) {
    const box = svg.viewBox.baseVal;
    svg.replaceChildren(svgNode("text", { x: box.width / 2, y: box.height / 2, "text-anchor": "middle", class: "no-data" }, "no data yet"));
  }

  const MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];

  // Date ticks for a time axis (epoch ms): first of months, or of weeks / days for short spans.
  function timeTicks(start, end, count) {
    const DAY = 86400000;
    const span = Math.max(end - start, DAY);
    const ticks = [];
    if (span > 75 * DAY) {
      const months = span / (30.4 * DAY);
      const every = [1, 2, 3, 6, 12].find((m) => months / m <= count) || 12;
      const date = new Date(start);
      let cursor = Date.UTC(date.getUTCFullYear(), date.getUTCMonth() + 1, 1);
      while (cursor <= end) {
        const d = new Date(cursor);
        if (d.getUTCMonth() % every === 0) {
          const label = d.getUTCMonth() === 0 ? String(d.getUTCFullYear()) : MONTHS[d.getUTCMonth()] + " '" + String(d.getUTCFullYear()).slice(2);
          ticks.push({ at: cursor, label: label });
        }
        cursor = Date.UTC(d.getUTCFullYear(), d.getUTCMonth() + 1, 1);
      }
    } else {
      const days = span / DAY;
      const every = [1, 2, 7, 14].find((n) => days / n <= count) || 14;
      let cursor = Math.ceil(start / DAY) * DAY;
      if (every >= 7) cursor += ((8 - new Date(cursor).getUTCDay()) % 7) * DAY; // Mondays
      for (; cursor <= end; cursor += every * DAY) {
        const d = new Date(cursor);
        ticks.push({ at: cursor, label: d.getUTCDate() + " " + MONTHS[d.getUTCMonth()] });
      }
    }
    return ticks;
  }

  function bandBadge(band) {
    return node("span", { class: "band " + band }, [band]);
  }

  // The link to an account page, showing its name (the id when it has none).
  function accountLink(row) {
    const name = row.name || (row.profile && row.profile.name) || row.account_id;
    const link = node("a", { href: "/accounts/" + encodeURIComponent(row.account_id), class: "account-link", "data-account": row.account_id }, [userText(name)]);
    if (name !== row.account_id) link.title = row.account_id;
    return link;
  }

  function show(id, text, raw) {
    const element = document.getElementById(id);
    element.textContent = text;
    element.dataset.value = raw === null || raw === undefined ? "" : String(raw);
  }

  function setToken(value) {
    token = value || null;
    if (token) window.sessionStorage.setItem("healthstream-token", token);
    else window.sessionStorage.removeItem("healthstream-token");
  }

  return {
    api: api, csvLink: csvLink, node: node, userText: userText, svgNode: svgNode, money: money, fixed: fixed, percent: percent,
    day: day, minute: minute, utc: utc, clock: clock, count: count, short: short, niceTicks: niceTicks, decimals: decimals, noData: noData, timeTicks: timeTicks, bandBadge: bandBadge,
    accountLink: accountLink, show: show, MONTHS: MONTHS, hasToken: function () { return token !== null; }, setToken: setToken,
  };
})();
