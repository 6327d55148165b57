"use strict";
// healthstream dashboard: polls the view's JSON API and draws everything with DOM and SVG nodes.
// Every string from the API goes into the page through textContent or an attribute, never as HTML.
(function () {
  const REFRESH_MS = 5000;
  const FILTERS_MS = 60000;  // the owner and segment choices change slowly: asked for once a minute
  const MAX_OFFSET = 1000000;  // the API's largest offset
  const CHART_MONTHS = 12;
  const TABLE_MONTHS = 4;
  const AT_RISK_ROWS = 12;
  const CHURNED_ROWS = 8;
  const ALERT_ROWS = 8;
  const MOVES_UP = ["new", "expansion", "reactivation"];
  const MOVES_DOWN = ["contraction", "churn"];

  const { api, csvLink, node, userText, svgNode, money, fixed, percent, day, minute, short, niceTicks, bandBadge, accountLink, show, count } = HS;

  // The list filters live in the address (?owner=&segment=&q=&severity=&rule=), so a filtered view
  // can be bookmarked and shared; paging offsets and the at-risk list's order (risk_sort) too.
  const state = new URLSearchParams(window.location.search);
  const FILTERS = ["owner", "segment", "q"];
  const ALERT_FILTERS = ["severity", "rule"];
  const RISK_SORTS = Array.from(document.getElementById("risk-sort").options, (option) => option.value);
  // Sorted by churn risk or renewal, the list holds only the accounts that have one: say how many
  // it leaves out, and why it is empty.
  const ONLY = {
    "-churn_risk": "none listed: only accounts with a 60-day churn risk are",
    "renewal": "none listed: only accounts with a renewal date are",
  };
  const LEFT_OUT = { "-churn_risk": "without a 60-day churn risk", "renewal": "without a renewal date" };
  // ... and when no account at all has a churn risk, what it takes
  const NO_MODEL = ONLY["-churn_risk"] + ", and that takes a fitted [model] in the workers' score configuration (streamer backtest --tune --write-config)";

  // Unless the address chooses an order: by 60-day churn risk when the workers publish one (a
  // fitted [model]: what `streamer backtest --tune` found ranks churn best), else by score.
  let defaultSort = "score";

  function riskSort() {
    const chosen = state.get("risk_sort");
    return RISK_SORTS.includes(chosen) ? chosen : defaultSort;
  }

  function remember() {
    const rest = state.toString();
    window.history.replaceState(null, "", window.location.pathname + (rest ? "?" + rest : ""));
  }

  // A filter in the address that is there but blank (?q=%20, ?owner=%20, ?rule=%2C: a hand-edited
  // or stale bookmark) is no filter the API takes: it is left out of the address, with a note that
  // says so, rather than refused by the lists it would go to.
  const COMMA_LISTS = ["severity", "rule"];
  const notes = [];
  function dropBlankFilters() {
    const blank = [];
    for (const name of [...FILTERS, ...ALERT_FILTERS]) {
      const value = state.get(name);
      if (!value) continue;  // absent, or "?q=": no filter already
      const parts = COMMA_LISTS.includes(name) ? value.split(",") : [value];
      if (parts.every((part) => !part.trim())) {
        blank.push(name + "=" + JSON.stringify(value));
        state.delete(name);
      }
    }
    if (blank.length) {
      notes.push("left out of the address, as blank: " + blank.join(", "));
      remember();
    }
    showNotes();
  }

  function showNotes() {
    const box = document.getElementById("note");
    box.textContent = notes.join("; ");
    box.hidden = !notes.length;
  }

  // A value from the address that is none of a select's options (?severity=bogus, or the two
  // severities of ?severity=critical,warning) is added as one: the control shows what the lists
  // are asked for, never "any" while they are filtered by something else.
  function holdValue(select, value) {
    if (value && !Array.from(select.options).some((option) => option.value === value)) {
      select.append(node("option", { value: value, selected: "", class: "from-address" }, [value + " (from the address)"]));
    }
    select.value = value;
  }

  function listQuery(names, extra) {
    const params = new URLSearchParams(extra);
    for (const name of names) {
      if (state.get(name)) params.set(name, state.get(name));
    }
    return params;
  }

  // A path with its query: every value encoded by URLSearchParams, never pasted in as text.
  function withParams(path, params, extra) {
    const query = new URLSearchParams(params);
    for (const [name, value] of Object.entries(extra || {})) query.set(name, String(value));
    const text = query.toString();
    return path + (text ? "?" + text : "");
  }

  // A paging offset from the address: a whole number of at most MAX_OFFSET digits 0-9, else 0.
  function offsetOf(key) {
    const text = state.get(key) || "";
    return /^[0-9]{1,7}$/.test(text) && Number(text) <= MAX_OFFSET ? Number(text) : 0;
  }

  function monthLabel(text) {
    return HS.MONTHS[Number(text.slice(5, 7)) - 1] + " '" + text.slice(2, 4);
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
    // churned accounts keep their last band and are not counted: say how many were left out
    const churned = now.accounts_by_stage.churned;
    show("band-note", "accounts not churned; " + churned + " churned ones are listed below", churned);
  }

  function pager(id, list, key, rows) {
    const offset = offsetOf(key);
    const box = document.getElementById(id);
    const previous = node("button", { type: "button", class: "prev" }, ["‹ newer"]);
    const next = node("button", { type: "button", class: "next" }, ["older ›"]);
    previous.disabled = offset <= 0;
    next.disabled = offset + rows >= list.total;
    previous.addEventListener("click", function () { move(key, Math.max(0, offset - rows)); });
    next.addEventListener("click", function () { move(key, offset + rows); });
    const left = list.unreadable || 0;  // entries the view could not read: left out, counted in total
    const last = Math.min(list.total, offset + list.items.length + left);
    const where = node("span", { class: "muted range" }, [list.total ? (offset + 1) + "–" + last + " of " + list.total : "none"]);
    const note = left ? [node("span", { class: "muted unreadable" }, [left + " unreadable " + (left === 1 ? "entry" : "entries") + " left out"])] : [];
    box.replaceChildren(previous, where, ...note, next);
  }

  function move(key, offset) {
    if (offset) state.set(key, String(offset)); else state.delete(key);
    remember();
    refresh();
  }

  // Nodes with a separator between them (each piece isolated on its own, not the whole line).
  function joined(nodes, separator) {
    return nodes.flatMap((item, index) => (index ? [separator, item] : [item]));
  }

  function accountRow(account, withReasons) {
    const when = account.days_to_renewal !== null ? " (" + Math.round(account.days_to_renewal) + " d)" : "";
    const renews = account.renewal_at ? node("span", {}, [node("span", { class: "nowrap" }, [day(account.renewal_at)]), when]) : "–";
    // a scheduled cancellation ends the subscription before any renewal: it is what the column shows
    const cancels = account.scheduled_cancellation_at;
    const renewal = cancels
      ? node("span", { class: "cancels", title: "cancellation scheduled" + (account.renewal_at ? "; renewal date " + day(account.renewal_at) + when : "") }, ["cancels ", node("span", { class: "nowrap" }, [day(cancels)])])
      : renews;
    const reasons = node("span", { class: "reasons" }, joined(account.reasons.slice(0, 2).map((reason) => userText(reason)), "; "));
    const use = account.events_28d === null || account.events_28d === undefined
      ? "–"
      : account.events_28d + " events, " + account.active_days_28d + " d" +
        (account.events_28d_percentile !== null && account.events_28d_percentile !== undefined
          ? " (p" + Math.round(account.events_28d_percentile) + ")"
          : "");
    const who = joined([account.owner, account.segment].filter(Boolean).map((value) => userText(value)), " · ");
    const band = [bandBadge(account.band)];
    if (account.override) band.push(node("span", { class: "overridden", title: "override by " + (account.override.author || "?") + ": " + (account.override.reason || "") }, ["override"]));
    const cells = [
      node("td", { class: "account" }, [accountLink(account), node("div", { class: "muted small" }, who)]),
      node("td", { class: "num score", "data-value": account.score }, [fixed(account.score, 1)]),
      node("td", {}, band),
      node("td", { class: "num risk", "data-value": account.churn_risk_60d, title: "calibrated churn probability within 60 days (– without a fitted model)" }, [percent(account.churn_risk_60d)]),
      node("td", { class: "num mrr", "data-value": account.mrr }, [money(account.mrr)]),
      node("td", {}, [account.lifecycle_stage]),
    ];
    if (withReasons) {
      cells.push(node("td", {}, [renewal]), node("td", { class: "use" }, [use]), node("td", {}, [reasons]));
    } else {
      cells.push(node("td", {}, [minute(account.as_of)]), node("td", {}, [reasons]));
    }
    return node("tr", { "data-account": account.account_id }, cells);
  }

  // Why the at-risk list is empty. `modelled`: accounts with a 60-day churn risk in the whole
  // projection; `whole`: the accounts at risk under the filters, in any order.
  function emptyAtRisk(sort, modelled, whole) {
    if (sort === "-churn_risk" && !modelled) return NO_MODEL;
    if (whole > 0 && ONLY[sort]) return ONLY[sort];
    return FILTERS.some((name) => state.get(name)) ? "no account at risk matches the filters" : "nobody at risk";
  }

  function renderAtRisk(list, query, modelled, whole) {
    const sort = riskSort();
    const left = LEFT_OUT[sort] && whole > list.total ? "; " + (whole - list.total) + " " + LEFT_OUT[sort] + " left out" : "";
    show("risk-total", count(list.total, "account") + left, list.total);
    const rows = list.items.map((a) => accountRow(a, true));
    if (!list.total) {
      const columns = document.querySelectorAll("#at-risk thead th").length;
      const why = emptyAtRisk(sort, modelled, whole);
      rows.push(node("tr", { class: "empty" }, [node("td", { colspan: String(columns), class: "muted" }, [why])]));
    }
    document.querySelector("#at-risk tbody").replaceChildren(...rows);
    document.getElementById("risk-csv").replaceChildren(csvLink(withParams("/api/accounts", query, { format: "csv" }), "CSV", "at-risk-accounts.csv"));
    pager("risk-pager", list, "risk_offset", AT_RISK_ROWS);
  }

  function renderChurned(list, query) {
    show("churned-total", count(list.total, "account"), list.total);
    document.querySelector("#churned tbody").replaceChildren(...list.items.map((a) => accountRow(a, false)));
    document.getElementById("churned-csv").replaceChildren(csvLink(withParams("/api/accounts", query, { format: "csv" }), "CSV", "churned-accounts.csv"));
    pager("churned-pager", list, "churned_offset", CHURNED_ROWS);
  }

  // Owner and segment choices from the projection (those with the most accounts, and the chosen
  // ones whatever their size); the search box; all kept in the address.
  function renderFilters(filters) {
    const lists = [["owner", filters.owners, filters.owners_total], ["segment", filters.segments, filters.segments_total]];
    for (const [name, values, total] of lists) {
      const select = document.getElementById("filter-" + name);
      const chosen = state.get(name) || "";
      const counts = new Map(Object.entries(values));
      const options = [node("option", { value: "" }, ["all " + name + "s"])];
      for (const [value, count] of counts) {
        options.push(node("option", { value: value }, [value + " (" + count + ")"]));
      }
      if (chosen && !counts.has(chosen)) options.push(node("option", { value: chosen }, [chosen + " (0)"]));
      // the API lists only the largest (and the chosen one, 0 when it has no account): say how
      // many more there are, and how to reach them
      const listed = Array.from(counts.values()).filter((count) => count > 0).length;
      if (total > listed) {
        const note = "… " + (total - listed) + " more " + name + "s with fewer accounts: give ?" + name + "= in the address";
        options.push(node("option", { value: "", disabled: "", class: "more" }, [note]));
      }
      select.replaceChildren(...options);
      select.value = chosen;
    }
  }

  // The filter choices are asked for once a minute, and again when the owner or segment chosen
  // changes (the API lists a chosen one whatever its size).
  let filters = null;
  let filtersAsked = "";
  let filtersAt = 0;
  async function filterChoices() {
    const query = withParams("/api/filters", listQuery(["owner", "segment"], {}));
    if (filters === null || query !== filtersAsked || Date.now() - filtersAt >= FILTERS_MS) {
      filters = await api(query);
      filtersAsked = query;
      filtersAt = Date.now();
    }
    return filters;
  }

  function wireFilters() {
    for (const name of ["owner", "segment", "severity"]) {
      const select = document.getElementById("filter-" + name);
      holdValue(select, state.get(name) || "");
      select.addEventListener("change", function () { setFilter(name, select.value); });
    }
    for (const name of ["q", "rule"]) {
      const input = document.getElementById("filter-" + name);
      input.value = state.get(name) || "";
      let timer = null;
      input.addEventListener("input", function () {
        window.clearTimeout(timer);
        timer = window.setTimeout(function () { setFilter(name, input.value.trim()); }, 300);
      });
    }
  }

  function wireSort() {
    const select = document.getElementById("risk-sort");
    select.value = riskSort();
    select.addEventListener("change", function () {
      if (select.value === defaultSort) state.delete("risk_sort"); else state.set("risk_sort", select.value);
      state.delete("risk_offset");
      remember();
      refresh();
    });
  }

  function setFilter(name, value) {
    if (value) state.set(name, value); else state.delete(name);
    notes.length = 0;  // the address is the person's choice now
    showNotes();
    for (const key of ["risk_offset", "churned_offset", "alerts_offset"]) state.delete(key);
    remember();
    refresh();
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
      svg.append(svgNode("text", { x: x, y: height - 6, "text-anchor": "middle", class: "tick-x" }, monthLabel(month.month)));
    });
    return { width: width, height: height, top: top, bottom: bottom, step: step, left: left, right: right };
  }

  function renderMrrChart(months) {
    const svg = document.getElementById("mrr-chart");
    if (!months.length) return HS.noData(svg);
    const frame = chartFrame(svg, months, 56, 64);
    const plotTop = frame.top, plotBottom = frame.height - frame.bottom;
    const up = months.map((m) => MOVES_UP.reduce((sum, kind) => sum + Number(m.movements[kind]), 0));
    const down = months.map((m) => MOVES_DOWN.reduce((sum, kind) => sum + Number(m.movements[kind]), 0));
    // Left axis: movements, round ticks from the largest outflow to the largest inflow.
    const left = niceTicks(-Math.max(1, ...down), Math.max(1, ...up), 4, 1);
    const scale = (plotBottom - plotTop) / (left.high - left.low);
    const ly = (value) => plotBottom - (value - left.low) * scale;
    const zero = ly(0);
    for (const tick of left.ticks) {
      svg.append(svgNode("line", { class: tick === 0 ? "zero" : "axis", x1: frame.left, x2: frame.width - frame.right, y1: ly(tick), y2: ly(tick) }));
      svg.append(svgNode("text", { x: frame.left - 6, y: ly(tick) + 4, "text-anchor": "end", class: "tick-y" }, (tick > 0 ? "+" : "") + short(tick)));
    }
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
    // End MRR as a line on its own scale (right axis, from 0, round ticks).
    const right = niceTicks(0, Math.max(1, ...months.map((m) => Number(m.end_mrr))), 4, 1);
    const y = (value) => plotBottom - ((plotBottom - plotTop) * Number(value)) / right.high;
    const points = months.map((m, i) => [frame.left + frame.step * (i + 0.5), y(m.end_mrr)]);
    if (points.length) {
      svg.append(svgNode("polyline", { class: "line-mrr", points: points.map((p) => p.join(",")).join(" ") }));
      for (const tick of right.ticks) {
        svg.append(svgNode("text", { x: frame.width - frame.right + 6, y: y(tick) + 4, class: "tick-y mrr-tick" }, short(tick)));
      }
    }
    months.forEach(function (month, index) {
      const dot = svgNode("circle", { class: "dot-mrr", cx: points[index][0], cy: points[index][1], r: 3.5, "data-month": month.month, "data-value": month.end_mrr });
      dot.append(svgNode("title", {}, month.month + " end MRR: " + money(month.end_mrr)));
      svg.append(dot);
    });
  }

  function renderRetentionChart(months) {
    const svg = document.getElementById("retention-chart");
    const values = months.flatMap((m) => [m.nrr, m.grr]).filter((v) => v !== null);
    if (!values.length) return HS.noData(svg);
    const frame = chartFrame(svg, months, 48, 16);
    const plotTop = frame.top, plotBottom = frame.height - frame.bottom;
    const axis = niceTicks(Math.min(1.0, ...values) - 0.005, Math.max(1.0, ...values) + 0.005, 4);
    const places = HS.decimals(axis.ticks.map((tick) => tick * 100));
    const low = axis.low, high = axis.high;
    const y = (value) => plotBottom - ((plotBottom - plotTop) * (value - low)) / (high - low);
    for (const tick of axis.ticks) {
      svg.append(svgNode("line", { class: tick === 1 ? "zero" : "axis", x1: frame.left, x2: frame.width - frame.right, y1: y(tick), y2: y(tick) }));
      svg.append(svgNode("text", { x: frame.left - 6, y: y(tick) + 4, "text-anchor": "end", class: "tick-y" }, (tick * 100).toFixed(places) + "%"));
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

  function renderAlerts(alerts, query) {
    const rows = alerts.items.map(function (alert) {
      const reason = alert.reasons.length ? alert.reasons[0].message : "";
      return node("tr", { "data-alert": alert.alert_id }, [
        node("td", {}, [minute(alert.raised_at)]),
        node("td", { class: "account" }, [accountLink(alert)]),
        node("td", {}, [alert.rule]),
        node("td", { class: "sev-" + alert.severity }, [alert.severity]),
        node("td", { class: "num score", "data-value": alert.score }, [fixed(alert.score, 1)]),
        node("td", {}, [bandBadge(alert.band)]),
        node("td", {}, [userText(reason)]),
      ]);
    });
    document.querySelector("#alerts tbody").replaceChildren(...rows);
    document.getElementById("alerts-csv").replaceChildren(csvLink(withParams("/api/alerts", query, { format: "csv" }), "CSV"));
    pager("alerts-pager", alerts, "alerts_offset", ALERT_ROWS);
  }

  // Why a list is not shown. A 400 names the address's filter the API refused (the one its message
  // quotes, else those the list used), with the value the address gave it.
  function refusal(list, names, problem) {
    const detail = problem.detail || String(problem.message || problem);
    const used = names.filter((name) => state.get(name));
    const named = used.filter((name) => detail.includes("'" + name + "'"));
    const filters = (named.length ? named : used).map((name) => name + "=" + JSON.stringify(state.get(name)));
    if (problem.status === 400 && filters.length) {
      return list + " not shown: the address's filter " + filters.join(", ") + " was refused: " + detail;
    }
    return list + " not shown: " + detail;
  }

  // A list the API refused: emptied (no rows of an earlier filter left standing), saying why.
  function renderRefused(table, total, pagerId, csvId, why) {
    const columns = document.querySelectorAll("#" + table + " thead th").length;
    const row = node("tr", { class: "empty refused" }, [node("td", { colspan: String(columns), class: "muted" }, [why])]);
    document.querySelector("#" + table + " tbody").replaceChildren(row);
    if (total) show(total, "", null);
    document.getElementById(pagerId).replaceChildren();
    document.getElementById(csvId).replaceChildren();
  }

  // The choices when the API did not give them: the last ones, else only the chosen values.
  const NO_CHOICES = { owners: {}, segments: {}, owners_total: 0, segments_total: 0 };

  function showProblems(problems) {
    const error = document.getElementById("error");
    error.replaceChildren(...problems.map((text) => node("span", { class: "problem" }, [text])));
    error.hidden = !problems.length;
  }

  async function refresh() {
    const error = document.getElementById("error");
    try {
      const modelled = await api("/api/accounts?sort=-churn_risk&limit=1");
      defaultSort = modelled.total ? "-churn_risk" : "score";
      const sort = riskSort();
      document.getElementById("risk-sort").value = riskSort();
      const risk = listQuery(FILTERS, { at_risk: "true", sort: sort });
      // in an order that leaves out accounts without the field, the total of the list in any order
      const whole = LEFT_OUT[sort] ? api(withParams("/api/accounts", listQuery(FILTERS, { at_risk: "true", sort: "score", limit: 1 }))) : null;
      const churned = listQuery(FILTERS, { stage: "churned", sort: "score" });
      const alertList = listQuery(["owner", "segment", ...ALERT_FILTERS], {});
      const page = (path, query, key, rows) => withParams(path, query, { limit: rows, offset: offsetOf(key) });
      // Settled one by one: a filter the API refuses empties the lists it goes to, not the page.
      const [health, portfolio, months, riskList, churnedList, alerts, choices, wholeRisk] = await Promise.allSettled([
        api("/healthz"),
        api("/api/portfolio"),
        api("/api/months"),
        api(page("/api/accounts", risk, "risk_offset", AT_RISK_ROWS)),
        api(page("/api/accounts", churned, "churned_offset", CHURNED_ROWS)),
        api(page("/api/alerts", alertList, "alerts_offset", ALERT_ROWS)),
        filterChoices(),
        whole,
      ]);
      // what no filter goes into failing is the view's problem (Redis down, a token): the page's
      for (const part of [health, portfolio, months]) {
        if (part.status === "rejected") throw part.reason;
      }
      const problems = [];
      renderPortfolio(portfolio.value);
      renderFilters(choices.status === "fulfilled" ? choices.value : filters || NO_CHOICES);
      const lists = [  // [answer, how to draw it, its name, the address's filters it takes, its slots]
        [riskList, (list) => renderAtRisk(list, risk, modelled.total, wholeRisk.status === "fulfilled" && wholeRisk.value ? wholeRisk.value.total : list.total), "at-risk list", FILTERS, ["at-risk", "risk-total", "risk-pager", "risk-csv"]],
        [churnedList, (list) => renderChurned(list, churned), "churned list", FILTERS, ["churned", "churned-total", "churned-pager", "churned-csv"]],
        [alerts, (list) => renderAlerts(list, alertList), "alerts", ["owner", "segment", ...ALERT_FILTERS], ["alerts", null, "alerts-pager", "alerts-csv"]],
      ];
      for (const [answer, render, name, names, slots] of lists) {
        if (answer.status === "fulfilled") {
          render(answer.value);
          continue;
        }
        const why = refusal(name, names, answer.reason);
        problems.push(why);
        renderRefused(...slots, why);
      }
      if (choices.status === "rejected" && !problems.length) problems.push(refusal("owner and segment choices", ["owner", "segment"], choices.reason));
      const recent = months.value.months.slice(-CHART_MONTHS);
      renderMrrChart(recent);
      renderRetentionChart(recent);
      renderMonthTable(recent.slice(-TABLE_MONTHS));
      const status = document.getElementById("status");
      status.textContent = health.value.status || "unknown";
      status.dataset.status = health.value.status || "error";
      status.title = (health.value.problems || []).join("\n");  // why it is degraded, on hover
      showProblems(problems);
      show("refreshed", HS.clock(), Date.now());
      document.body.dataset.loaded = "true";
    } catch (problem) {
      error.textContent = String(problem.message || problem);
      error.hidden = false;
      const status = document.getElementById("status");
      status.textContent = "error";
      status.dataset.status = "error";
      status.title = error.textContent;  // the reason, on hover as for "degraded"
    }
  }

  dropBlankFilters();
  wireFilters();
  wireSort();
  refresh();
  window.setInterval(refresh, REFRESH_MS);
})();
