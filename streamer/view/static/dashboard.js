"use strict";
// healthstream dashboard: polls the view's JSON API and draws everything with DOM and SVG nodes.
// Every string from the API goes into the page through textContent or an attribute, never as HTML.
(function () {
  const REFRESH_MS = 5000;
  const CHART_MONTHS = 12;
  const TABLE_MONTHS = 4;
  const AT_RISK_ROWS = 12;
  const ALERT_ROWS = 8;
  const SVG_NS = "http://www.w3.org/2000/svg";
  const MOVES_UP = ["new", "expansion", "reactivation"];
  const MOVES_DOWN = ["contraction", "churn"];

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

  async function api(path) {
    const headers = token ? { Authorization: "Bearer " + token } : {};
    const response = await fetch(path, { headers: headers, cache: "no-store" });
    let body = {};
    try {
      body = await response.json();
    } catch (ignored) {
      body = {};
    }
    if (!response.ok && path !== "/healthz") {
      throw new Error(path + ": " + (body.error || response.status + " " + response.statusText));
    }
    return body;
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

  function svgNode(tag, attrs, text) {
    const element = document.createElementNS(SVG_NS, tag);
    for (const [name, value] of Object.entries(attrs || {})) element.setAttribute(name, String(value));
    if (text !== undefined) element.textContent = String(text);
    return element;
  }

  // Money arrives as exact decimal strings: group the digits without going through a float.
  function money(text) {
    if (text === null || text === undefined) return "–";
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

  function monthLabel(text) {
    const names = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
    return names[Number(text.slice(5, 7)) - 1] + " '" + text.slice(2, 4);
  }

  function show(id, text, raw) {
    const element = document.getElementById(id);
    element.textContent = text;
    element.dataset.value = raw === null || raw === undefined ? "" : String(raw);
  }

  function bandBadge(band) {
    return node("span", { class: "band " + band }, [band]);
  }

  function renderPortfolio(portfolio) {
    const now = portfolio.current;
    show("as-of", minute(portfolio.as_of), portfolio.as_of);
    show("currency", portfolio.currency, portfolio.currency);
    show("kpi-mrr", money(now.mrr), now.mrr);
    show("kpi-arr", money(now.arr), now.arr);
    show("kpi-paying", String(now.paying_accounts) + " / " + now.accounts, now.paying_accounts);
    show("kpi-arpa", money(now.arpa), now.arpa);
    show("kpi-nps", fixed(now.nps, 1), now.nps);
    show("kpi-csat", fixed(now.csat, 1), now.csat);
    show("kpi-ces", fixed(now.ces, 2), now.ces);
    show("kpi-art", fixed(now.art_hours_90d, 1), now.art_hours_90d);
    show("kpi-fcr", percent(now.fcr_90d), now.fcr_90d);
    show("kpi-open", String(now.open_tickets), now.open_tickets);
    const bar = document.getElementById("band-bar");
    const parts = [];
    for (const band of ["green", "yellow", "red"]) {
      const count = now.accounts_by_band[band];
      show("band-" + band, String(count), count);
      const part = node("div", { class: band, title: band + ": " + count });
      part.style.flexGrow = String(count);
      parts.push(part);
    }
    bar.replaceChildren(...parts);
  }

  function renderAtRisk(list) {
    show("risk-total", list.total + " accounts", list.total);
    const rows = list.items.map(function (account) {
      const renewal = account.renewal_at
        ? day(account.renewal_at) + (account.days_to_renewal !== null ? " (" + Math.round(account.days_to_renewal) + " d)" : "")
        : "–";
      const reasons = node("span", { class: "reasons" }, [account.reasons.slice(0, 2).join("; ")]);
      const use = account.events_28d === null || account.events_28d === undefined
        ? "–"
        : account.events_28d + " events, " + account.active_days_28d + " d" +
          (account.events_28d_percentile !== null && account.events_28d_percentile !== undefined
            ? " (p" + Math.round(account.events_28d_percentile) + ")"
            : "");
      return node("tr", { "data-account": account.account_id }, [
        node("td", { class: "account" }, [account.account_id]),
        node("td", { class: "num score", "data-value": account.score }, [fixed(account.score, 1)]),
        node("td", {}, [bandBadge(account.band)]),
        node("td", { class: "num risk", "data-value": account.churn_risk_60d, title: "calibrated churn probability within 60 days (– without a fitted model)" }, [percent(account.churn_risk_60d)]),
        node("td", { class: "num mrr", "data-value": account.mrr }, [money(account.mrr)]),
        node("td", {}, [account.lifecycle_stage]),
        node("td", {}, [renewal]),
        node("td", { class: "use" }, [use]),
        node("td", {}, [reasons]),
      ]);
    });
    document.querySelector("#at-risk tbody").replaceChildren(...rows);
  }

  function chartFrame(svg, months, left, right) {
    const box = svg.viewBox.baseVal;
    const width = box.width, height = box.height, top = 14, bottom = 24;
    const step = (width - left - right) / Math.max(months.length, 1);
    svg.replaceChildren();
    const every = Math.ceil(months.length / 8);
    months.forEach(function (month, index) {
      if ((months.length - 1 - index) % every !== 0) return;
      const x = left + step * (index + 0.5);
      svg.append(svgNode("text", { x: x, y: height - 6, "text-anchor": "middle" }, monthLabel(month.month)));
    });
    return { width: width, height: height, top: top, bottom: bottom, step: step, left: left, right: right };
  }

  function renderMrrChart(months) {
    const svg = document.getElementById("mrr-chart");
    const frame = chartFrame(svg, months, 56, 64);
    const plotTop = frame.top, plotBottom = frame.height - frame.bottom;
    const up = months.map((m) => MOVES_UP.reduce((sum, kind) => sum + Number(m.movements[kind]), 0));
    const down = months.map((m) => MOVES_DOWN.reduce((sum, kind) => sum + Number(m.movements[kind]), 0));
    const span = Math.max(1, ...up) + Math.max(1, ...down);
    const zero = plotTop + ((plotBottom - plotTop) * Math.max(1, ...up)) / span;
    const scale = (plotBottom - plotTop) / span;
    svg.append(svgNode("line", { class: "zero", x1: frame.left, x2: frame.width - frame.right, y1: zero, y2: zero }));
    svg.append(svgNode("text", { x: frame.left - 6, y: plotTop + 8, "text-anchor": "end" }, "+" + money(Math.max(...up, 0).toFixed(0))));
    svg.append(svgNode("text", { x: frame.left - 6, y: plotBottom, "text-anchor": "end" }, "-" + money(Math.max(...down, 0).toFixed(0))));
    const barWidth = Math.max(4, frame.step * 0.5);
    months.forEach(function (month, index) {
      const x = frame.left + frame.step * (index + 0.5) - barWidth / 2;
      let above = zero, below = zero;
      for (const kind of MOVES_UP) {
        const h = Number(month.movements[kind]) * scale;
        above -= h;
        const rect = svgNode("rect", { class: "bar-" + kind, x: x, y: above, width: barWidth, height: h, "data-month": month.month, "data-kind": kind, "data-value": month.movements[kind] });
        rect.append(svgNode("title", {}, month.month + " " + kind + ": " + money(month.movements[kind])));
        svg.append(rect);
      }
      for (const kind of MOVES_DOWN) {
        const h = Number(month.movements[kind]) * scale;
        const rect = svgNode("rect", { class: "bar-" + kind, x: x, y: below, width: barWidth, height: h, "data-month": month.month, "data-kind": kind, "data-value": month.movements[kind] });
        rect.append(svgNode("title", {}, month.month + " " + kind + ": -" + money(month.movements[kind])));
        svg.append(rect);
        below += h;
      }
    });
    // End MRR as a line on its own scale (right axis, from 0).
    const top = Math.max(1, ...months.map((m) => Number(m.end_mrr)));
    const y = (value) => plotBottom - ((plotBottom - plotTop) * Number(value)) / top;
    const points = months.map((m, i) => [frame.left + frame.step * (i + 0.5), y(m.end_mrr)]);
    if (points.length) {
      svg.append(svgNode("polyline", { class: "line-mrr", points: points.map((p) => p.join(",")).join(" ") }));
      svg.append(svgNode("text", { x: frame.width - frame.right + 6, y: plotTop + 8 }, money(top.toFixed(0))));
      svg.append(svgNode("text", { x: frame.width - frame.right + 6, y: plotBottom }, "0"));
    }
    months.forEach(function (month, index) {
      const dot = svgNode("circle", { class: "dot-mrr", cx: points[index][0], cy: points[index][1], r: 3.5, "data-month": month.month, "data-value": month.end_mrr });
      dot.append(svgNode("title", {}, month.month + " end MRR: " + money(month.end_mrr)));
      svg.append(dot);
    });
  }

  function renderRetentionChart(months) {
    const svg = document.getElementById("retention-chart");
    const frame = chartFrame(svg, months, 48, 16);
    const plotTop = frame.top, plotBottom = frame.height - frame.bottom;
    const values = months.flatMap((m) => [m.nrr, m.grr]).filter((v) => v !== null);
    const high = Math.max(1.0, ...values) + 0.02, low = Math.min(1.0, ...values) - 0.02;
    const y = (value) => plotBottom - ((plotBottom - plotTop) * (value - low)) / (high - low);
    for (const tick of [low, 1, high]) {
      svg.append(svgNode("line", { class: "axis", x1: frame.left, x2: frame.width - frame.right, y1: y(tick), y2: y(tick) }));
      svg.append(svgNode("text", { x: frame.left - 6, y: y(tick) + 4, "text-anchor": "end" }, percent(tick)));
    }
    for (const metric of ["nrr", "grr"]) {
      const points = [];
      months.forEach(function (month, index) {
        if (month[metric] === null) return;
        const x = frame.left + frame.step * (index + 0.5);
        points.push([x, y(month[metric])]);
      });
      if (points.length) {
        svg.append(svgNode("polyline", { class: "line-" + metric, points: points.map((p) => p.join(",")).join(" ") }));
      }
      months.forEach(function (month, index) {
        if (month[metric] === null) return;
        const dot = svgNode("circle", { class: "dot-" + metric, cx: frame.left + frame.step * (index + 0.5), cy: y(month[metric]), r: 3.5, "data-month": month.month, "data-metric": metric, "data-value": month[metric] });
        dot.append(svgNode("title", {}, month.month + " " + metric.toUpperCase() + ": " + percent(month[metric])));
        svg.append(dot);
      });
    }
  }

  function renderMonthTable(months) {
    const rows = months.slice().reverse().map(function (month) {
      return node("tr", { "data-month": month.month }, [
        node("td", {}, [month.month]),
        node("td", { class: "num end-mrr", "data-value": month.end_mrr }, [money(month.end_mrr)]),
        node("td", { class: "num net-new", "data-value": month.net_new_mrr }, [money(month.net_new_mrr)]),
        node("td", { class: "num nrr", "data-value": month.nrr === null ? "" : month.nrr }, [percent(month.nrr)]),
        node("td", { class: "num grr", "data-value": month.grr === null ? "" : month.grr }, [percent(month.grr)]),
        node("td", { class: "num churn", "data-value": month.logo_churn_rate === null ? "" : month.logo_churn_rate }, [percent(month.logo_churn_rate)]),
      ]);
    });
    document.querySelector("#months tbody").replaceChildren(...rows);
  }

  function renderAlerts(alerts) {
    const rows = alerts.items.map(function (alert) {
      const reason = alert.reasons.length ? alert.reasons[0].message : "";
      return node("tr", { "data-alert": alert.alert_id }, [
        node("td", {}, [minute(alert.raised_at)]),
        node("td", { class: "account" }, [alert.account_id]),
        node("td", {}, [alert.rule]),
        node("td", { class: "sev-" + alert.severity }, [alert.severity]),
        node("td", { class: "num score", "data-value": alert.score }, [fixed(alert.score, 1)]),
        node("td", {}, [bandBadge(alert.band)]),
        node("td", {}, [reason]),
      ]);
    });
    document.querySelector("#alerts tbody").replaceChildren(...rows);
  }

  async function refresh() {
    const error = document.getElementById("error");
    try {
      const [health, portfolio, risk, months, alerts] = await Promise.all([
        api("/healthz"),
        api("/api/portfolio"),
        api("/api/accounts?at_risk=true&sort=score&limit=" + AT_RISK_ROWS),
        api("/api/months"),
        api("/api/alerts?limit=" + ALERT_ROWS),
      ]);
      renderPortfolio(portfolio);
      renderAtRisk(risk);
      const recent = months.months.slice(-CHART_MONTHS);
      renderMrrChart(recent);
      renderRetentionChart(recent);
      renderMonthTable(recent.slice(-TABLE_MONTHS));
      renderAlerts(alerts);
      const status = document.getElementById("status");
      status.textContent = health.status || "unknown";
      status.dataset.status = health.status || "error";
      error.hidden = true;
      show("refreshed", new Date().toTimeString().slice(0, 8), Date.now());
      document.body.dataset.loaded = "true";
    } catch (problem) {
      error.textContent = String(problem.message || problem);
      error.hidden = false;
      const status = document.getElementById("status");
      status.textContent = "error";
      status.dataset.status = "error";
    }
  }

  refresh();
  window.setInterval(refresh, REFRESH_MS);
})();
