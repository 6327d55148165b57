// healthstream account page: one account's health now, how it got there, and its alerts.
(function () {
  const REFRESH_MS = 10000;
  const ALERT_ROWS = 10;
  const COMPONENTS = ["adoption", "support", "sentiment", "financial"];
  const METRICS = [
    ["events_28d", "product events, 28 d"], ["active_days_28d", "active days, 28 d"], ["active_users_28d", "active users, 28 d"],
    ["days_since_last_use", "days since last use"], ["seat_utilisation", "seat utilisation"], ["feature_breadth", "features used, 30 d"],
    ["features_used_28d", "features used of those peers use, 28 d"],
    ["usage_trend", "usage, last 7 d vs baseline"], ["open_tickets", "open tickets"], ["oldest_open_ticket_hours", "oldest open ticket (h)"],
    ["tickets_opened_30d", "tickets opened, 30 d"], ["nps", "NPS"], ["nps_respondents", "NPS respondents"], ["csat", "CSAT, satisfied"],
    ["ces", "CES (effort, of 7)"], ["payment_failures_30d", "payment failures, 30 d"], ["mrr_trend_90d", "MRR trend, 90 d"],
    ["days_to_renewal", "days to renewal"], ["scheduled_cancellation_at", "cancellation scheduled for"],
  ];
  const { api, csvLink, node, userText, svgNode, money, fixed, percent, day, minute, utc, short, niceTicks, timeTicks, bandBadge, show } = HS;
  // How a key metric reads: ratios as percentages, days whole, CES on its scale of 7; else as it is.
  const PERCENT = ["seat_utilisation", "usage_trend", "mrr_trend_90d"];
  const SHOWN = {
    days_to_renewal: (value) => Math.round(value) + " d",
    days_since_last_use: (value) => Math.round(value) + " d",
    ces: (value) => value.toFixed(1) + " of 7",
    csat: (value) => value.toFixed(1) + "%",
  };
  function metricText(name, value) {
    if (typeof value !== "number") return day(String(value));
    if (PERCENT.includes(name)) return (value > 0 && name !== "seat_utilisation" ? "+" : "") + percent(value);
    if (SHOWN[name]) return SHOWN[name](value);
    return Number.isInteger(value) ? String(value) : value.toFixed(2);
  }
  const PROFILE_FIELDS = ["name", "owner", "segment", "tier"];
  const DAY = 86400000;

  // The id the view read from the address, which it puts on the body; else the address decoded
  // here (null when it cannot be: a bare "%" is no escape, and decodeURIComponent throws).
  function readAccountId() {
    const given = document.body.dataset.accountId;
    if (given !== undefined) return given;
    try {
      return decodeURIComponent(window.location.pathname.replace(/^\/accounts\//, ""));
    } catch (ignored) {
      return null;
    }
  }
  const accountId = readAccountId();
  const base = "/api/accounts/" + encodeURIComponent(accountId === null ? "" : accountId);
  let alertOffset = 0;

  function text(id, value) {
    show(id, value === null || value === undefined || value === "" ? "–" : String(value), value);
  }

  function renderHeadline(snapshot) {
    const profile = snapshot.profile || {};
    document.title = "healthstream · " + (profile.name || accountId);
    text("name", profile.name || accountId);
    text("account-id", accountId);
    text("owner", profile.owner);
    text("segment", profile.segment);
    text("tier", profile.tier);
    text("plan", snapshot.plan);
    show("score", fixed(snapshot.score, 1), snapshot.score);
    // an override's score is the person's: a tag says so, and the model's score is on hover
    const forced = snapshot.override;
    const tag = document.getElementById("score-override");
    tag.hidden = !forced;
    const computed = forced ? "computed: " + fixed(forced.computed_score, 1) + " " + (forced.computed_band || "") : "";
    tag.title = computed;
    document.getElementById("score").title = computed;
    document.getElementById("band").replaceChildren(bandBadge(snapshot.band));
    document.getElementById("band").dataset.value = snapshot.band;
    show("mrr", money(snapshot.mrr) + " " + snapshot.currency, snapshot.mrr);
    text("stage", snapshot.lifecycle_stage);
    show("risk", percent(snapshot.churn_risk_60d), snapshot.churn_risk_60d);
    const metrics = snapshot.metrics || {};
    text("renewal", metrics.renewal_at ? day(metrics.renewal_at) : null);
    show("as-of", minute(snapshot.as_of), snapshot.as_of);
    const override = snapshot.override;
    const box = document.getElementById("override");
    box.hidden = !override;
    renderClearButton(override);
    if (override) {
      // exactly one of band and score was asked for: a score override's band is null (no "null" pill)
      document.getElementById("override-band").replaceChildren(...(override.band ? [bandBadge(override.band)] : []));
      // ... and a band override has no score: nothing there, not text()'s "–" before the "—"
      show("override-score", override.score !== null && override.score !== undefined ? "score " + fixed(override.score, 1) : "", override.score);
      text("override-reason", override.reason);
      text("override-author", override.author);
      text("override-set", minute(override.set_at));
      text("override-until", override.expires_at ? minute(override.expires_at) : "further notice");
      text("override-computed", fixed(override.computed_score, 1) + " " + (override.computed_band || ""));
    }
  }

  function renderReasons(snapshot) {
    const reasons = (snapshot.reasons || []).map((r) =>
      node("li", { "data-signal": r.signal }, [userText(r.message), r.percentile !== null && r.percentile !== undefined ? " (p" + Math.round(r.percentile) + ")" : ""]));
    if (!reasons.length) reasons.push(node("li", { class: "muted" }, ["nothing stands out"]));
    document.getElementById("reasons").replaceChildren(...reasons);
    const rows = Object.entries(snapshot.components || {}).map(([name, c]) =>
      node("tr", { "data-component": name }, [
        node("td", {}, [name + (c.missing ? " (no data)" : "")]),
        node("td", { class: "num" }, [fixed(c.score, 1)]),
        node("td", { class: "num" }, [percent(c.weight)]),
      ]));
    document.querySelector("#components tbody").replaceChildren(...rows);
    const metrics = snapshot.metrics || {};
    const metricRows = METRICS.filter(([name]) => metrics[name] !== null && metrics[name] !== undefined).map(([name, label]) => {
      const value = metrics[name];
      const shown = metricText(name, value);
      return node("tr", { "data-metric": name }, [node("td", {}, [label]), node("td", { class: "num", "data-value": value }, [shown])]);
    });
    document.querySelector("#metrics tbody").replaceChildren(...metricRows);
  }

  // A time axis along the bottom and a value axis on the left, with round ticks.
  function frame(svg, start, end, low, high, format) {
    const box = svg.viewBox.baseVal;
    const f = { left: 48, right: 12, top: 10, bottom: 22, width: box.width, height: box.height };
    const x = (at) => f.left + ((at - start) / Math.max(end - start, 1)) * (f.width - f.left - f.right);
    const y = (value) => f.height - f.bottom - ((value - low) / Math.max(high - low, 1e-9)) * (f.height - f.top - f.bottom);
    svg.replaceChildren();
    return { f: f, x: x, y: y, axes: function (ticks) {
      for (const tick of ticks) {
        svg.append(svgNode("line", { class: "axis", x1: f.left, x2: f.width - f.right, y1: y(tick), y2: y(tick) }));
        svg.append(svgNode("text", { x: f.left - 6, y: y(tick) + 4, "text-anchor": "end", class: "tick-y" }, format(tick)));
      }
      for (const tick of timeTicks(start, end, 7)) {
        svg.append(svgNode("line", { class: "axis", x1: x(tick.at), x2: x(tick.at), y1: f.top, y2: f.height - f.bottom }));
        svg.append(svgNode("text", { x: x(tick.at), y: f.height - 6, "text-anchor": "middle", class: "tick-x" }, tick.label));
      }
    } };
  }

  function times(points) {
    const at = points.map((p) => Date.parse(p.as_of));
    const end = at.length ? at[at.length - 1] : Date.now();
    return { at: at, start: at.length > 1 ? at[0] : end - DAY, end: end };
  }

  function line(points, at, x, y, value, attrs) {
    const coords = [];
    points.forEach(function (p, i) {
      const v = value(p);
      if (v !== null && v !== undefined) coords.push(x(at[i]).toFixed(1) + "," + y(v).toFixed(1));
    });
    return svgNode("polyline", Object.assign({ points: coords.join(" ") }, attrs));
  }

  // The score in the colour of the band the account was published in at each point: that band
  // reads peers, the green budget, scheduled cancellations, per-plan bands and overrides too, so no
  // fixed score threshold (no band shading behind the line) tells it. One line per run of a band,
  // from the run's first point (joined to the run before); `data-points`: the points of the run.
  function scoreRuns(points, at, x, y) {
    const runs = [];
    points.forEach(function (p, i) {
      const here = x(at[i]).toFixed(1) + "," + y(p.score).toFixed(1);
      const last = runs[runs.length - 1];
      if (last && last.band === p.band) {
        last.coords.push(here);
        last.count += 1;
      } else {
        runs.push({ band: p.band, coords: last ? [last.coords[last.coords.length - 1], here] : [here], count: 1 });
      }
    });
    return runs.map((run) => svgNode("polyline", { class: "line-score " + run.band, "data-band": run.band, "data-points": run.count, points: run.coords.join(" ") }));
  }

  function renderScoreChart(history) {
    const svg = document.getElementById("score-chart");
    const points = history.points;
    if (!points.length) return HS.noData(svg);
    const t = times(points);
    const chart = frame(svg, t.start, t.end, 0, 100, (v) => String(v));
    chart.axes([0, 20, 40, 60, 80, 100]);
    for (const name of COMPONENTS) {
      svg.append(line(points, t.at, chart.x, chart.y, (p) => p.components[name], { class: "line-" + name, "data-component": name }));
    }
    svg.append(...scoreRuns(points, t.at, chart.x, chart.y));
    points.forEach(function (p, i) {
      if (i < points.length - 1 && points[i + 1].band === p.band) return;
      const dot = svgNode("circle", { class: "dot-score " + p.band, cx: chart.x(t.at[i]), cy: chart.y(p.score), r: 3, "data-value": p.score });
      dot.append(svgNode("title", {}, utc(p.as_of) + ": " + fixed(p.score, 1) + " " + p.band));
      svg.append(dot);
    });
  }

  function renderMrrChart(history) {
    const svg = document.getElementById("mrr-history");
    const points = history.points;
    document.getElementById("history-csv").replaceChildren(csvLink(base + "/history?format=csv", "CSV"));
    if (!points.length) return HS.noData(svg);
    const t = times(points);
    const axis = niceTicks(0, Math.max(1, ...points.map((p) => Number(p.mrr))), 4, 1);
    const chart = frame(svg, t.start, t.end, 0, axis.high, short);
    chart.axes(axis.ticks);
    const coords = [];
    points.forEach(function (p, i) {
      if (i > 0) coords.push(chart.x(t.at[i]).toFixed(1) + "," + chart.y(Number(points[i - 1].mrr)).toFixed(1));
      coords.push(chart.x(t.at[i]).toFixed(1) + "," + chart.y(Number(p.mrr)).toFixed(1));
    });
    svg.append(svgNode("polyline", { class: "line-mrr", points: coords.join(" ") }));
    for (const move of history.movements) {
      const dot = svgNode("circle", { class: "move " + move.kind, cx: chart.x(Date.parse(move.at)), cy: chart.y(Number(move.to)), r: 4, "data-kind": move.kind });
      dot.append(svgNode("title", {}, day(move.at) + " " + move.kind + ": " + money(move.change)));
      svg.append(dot);
    }
    const rows = history.movements.slice().reverse().slice(0, 12).map((m) =>
      node("tr", { "data-kind": m.kind }, [
        node("td", {}, [minute(m.at)]), node("td", { class: "move-" + m.kind }, [m.kind]),
        node("td", { class: "num" }, [money(m.from)]), node("td", { class: "num" }, [money(m.to)]),
        node("td", { class: "num" }, [money(m.change)]),
      ]));
    document.querySelector("#movements tbody").replaceChildren(...rows);
  }

  function renderTimeline(timeline) {
    const items = timeline.items.map((entry) =>
      node("li", { class: "kind-" + entry.kind, "data-kind": entry.kind }, [
        node("time", {}, [minute(entry.at)]), " ", node("span", { class: "kind" }, [entry.kind]), " ", userText(entry.text),
      ]));
    if (!items.length) items.push(node("li", { class: "muted" }, ["nothing yet"]));
    document.getElementById("timeline").replaceChildren(...items);
    document.getElementById("timeline-csv").replaceChildren(csvLink(base + "/timeline?format=csv", "CSV"));
  }

  function renderAlerts(alerts) {
    const rows = alerts.items.map((alert) =>
      node("tr", { "data-alert": alert.alert_id }, [
        node("td", {}, [minute(alert.raised_at)]), node("td", {}, [alert.rule]),
        node("td", { class: "sev-" + alert.severity }, [alert.severity]),
        node("td", { class: "num" }, [fixed(alert.score, 1)]), node("td", {}, [bandBadge(alert.band)]),
        node("td", {}, [userText(alert.reasons.length ? alert.reasons[0].message : "")]),
      ]));
    document.querySelector("#alerts tbody").replaceChildren(...rows);
    document.getElementById("alerts-csv").replaceChildren(csvLink(base + "/alerts?format=csv", "CSV"));
    const pager = document.getElementById("alerts-pager");
    const previous = node("button", { type: "button" }, ["‹ newer"]);
    const next = node("button", { type: "button" }, ["older ›"]);
    previous.disabled = alertOffset <= 0;
    next.disabled = alertOffset + ALERT_ROWS >= alerts.total;
    previous.addEventListener("click", function () { alertOffset = Math.max(0, alertOffset - ALERT_ROWS); refresh(); });
    next.addEventListener("click", function () { alertOffset += ALERT_ROWS; refresh(); });
    const left = alerts.unreadable || 0;  // alerts the view could not read: left out, counted in total
    const last = Math.min(alerts.total, alertOffset + alerts.items.length + left);
    const note = left ? [node("span", { class: "muted unreadable" }, [left + " unreadable " + (left === 1 ? "alert" : "alerts") + " left out"])] : [];
    pager.replaceChildren(previous, node("span", { class: "muted range" }, [alerts.total ? (alertOffset + 1) + "–" + last + " of " + alerts.total : "none"]), ...note, next);
  }

  async function refresh() {
    const error = document.getElementById("error");
    try {
      const [snapshot, history, timeline, alerts] = await Promise.all([
        api(base), api(base + "/history"), api(base + "/timeline"),
        api(base + "/alerts?limit=" + ALERT_ROWS + "&offset=" + alertOffset),
      ]);
      renderHeadline(snapshot);
      fillProfile(snapshot);
      renderReasons(snapshot);
      renderScoreChart(history);
      renderMrrChart(history);
      renderTimeline(timeline);
      renderAlerts(alerts);
      error.hidden = true;
      show("refreshed", HS.clock(), Date.now());
      document.body.dataset.loaded = "true";
    } catch (problem) {
      error.textContent = String(problem.message || problem);
      error.hidden = false;
    }
  }

  // The two forms post JSON to the view's write endpoints with the token typed here.
  function say(message) {
    document.getElementById("form-status").textContent = message;
  }

  async function submit(form, path, body) {
    try {
      await api(base + path, { method: "POST", body: JSON.stringify(body), headers: { "Content-Type": "application/json" } });
      say("saved; the change shows once the worker has scored it");
      refresh();
      return true;
    } catch (problem) {
      say(String(problem.message || problem));
      return false;
    }
  }

  // "remove the override" only means something while one is in force: else it is disabled, and says why.
  function renderClearButton(override) {
    const clear = document.getElementById("override-clear");
    clear.disabled = !override;
    clear.title = override ? "remove the override now (give your author; a reason is kept if given)" : "no override is in force";
  }

  // A score is asked for when no band is chosen: it is required then, and never made up (Number("") is 0).
  function requireScore(form) {
    form.elements.score.required = !form.elements.band.value;
  }

  // The first field the browser finds wrong, with what to do about it; null when all are right.
  function whyInvalid(form) {
    const wrong = Array.from(form.elements).find((field) => field.willValidate && !field.validity.valid);
    if (!wrong) return null;
    if (wrong.name === "score" && wrong.validity.valueMissing) {
      return { field: wrong, message: "choose a band, or give a score from 0 to 100: the score is empty" };
    }
    return { field: wrong, message: wrong.name + ": " + wrong.validationMessage };
  }

  // "until" is a day: the override lasts to its end (a day's 00:00 made "today" a time in the past).
  function endOfDay(date) {
    return date + "T23:59:59Z";
  }

  function wireOverride(override) {
    const band = override.elements.band;
    requireScore(override);
    band.addEventListener("change", function () { requireScore(override); });
    override.addEventListener("submit", function (event) {
      event.preventDefault();
      requireScore(override);  // the band may have been set without a change event
      const invalid = whyInvalid(override);
      if (invalid) {
        say(invalid.message);
        invalid.field.reportValidity();
        return;
      }
      const data = new FormData(override);
      const body = { reason: data.get("reason"), author: data.get("author"), expires_at: endOfDay(data.get("expires_at")) };
      if (data.get("band")) body.band = data.get("band");
      else body.score = Number(data.get("score"));  // typed: whyInvalid refused an empty one
      submit(override, "/override", body);
    });
    document.getElementById("override-clear").addEventListener("click", function () {
      const author = override.elements.author;
      if (!author.value.trim()) {  // as the set form: a removal says who removed it
        say("give your name or email as author to remove the override");
        author.reportValidity();
        return;
      }
      const body = { clear: true, author: author.value };
      if (override.elements.reason.value) body.reason = override.elements.reason.value;
      submit(override, "/override", body);
    });
  }

  // The profile form. An update replaces the whole profile (a field left out is cleared), and
  // others change it too (a CRM sync): the form remembers what each field was filled with, and
  // saving sends, field by field, what the person changed and else the profile as it is then.
  const filled = {};  // what each field was filled with (the person has not changed it while equal)
  let seen = null;    // the last profile the API showed, to tell a newer one
  function fillProfile(snapshot) {
    const form = document.getElementById("profile-form");
    const profile = snapshot.profile || {};
    for (const name of PROFILE_FIELDS) {
      const value = profile[name] || "";
      const input = form.elements[name];
      const newer = seen === null || seen[name] !== value;
      // a newer value replaces a field the person has not touched; an edited one is theirs
      if (newer && (seen === null || input.value === filled[name])) {
        input.value = value;
        filled[name] = value;
      }
    }
    seen = Object.fromEntries(PROFILE_FIELDS.map((name) => [name, profile[name] || ""]));
  }

  // The three-way merge: the person's value where they changed the field, else the current one;
  // the attributes (the form does not edit them) as they are now.
  function mergeProfile(form, current) {
    const body = { attributes: current.attributes || {} };
    for (const name of PROFILE_FIELDS) {
      const typed = form.elements[name].value;
      const value = typed !== filled[name] ? typed : current[name] || "";
      if (value) body[name] = value;  // left out: cleared
    }
    return body;
  }

  function wireProfile(profile) {
    profile.addEventListener("submit", async function (event) {
      event.preventDefault();
      let current;
      try {
        current = (await api(base)).profile || {};  // as it is now, not as at page load
      } catch (problem) {
        say("could not read the current profile, nothing saved: " + String(problem.message || problem));
        return;
      }
      const body = mergeProfile(profile, current);
      if (await submit(profile, "/profile", body)) {
        for (const name of PROFILE_FIELDS) {  // what was sent is now what the fields hold
          filled[name] = body[name] || "";
          profile.elements[name].value = filled[name];
        }
      }
    });
  }

  function wireForms() {
    const token = document.getElementById("token");
    token.addEventListener("change", function () { HS.setToken(token.value.trim()); });
    wireOverride(document.getElementById("override-form"));
    wireProfile(document.getElementById("profile-form"));
  }

  if (accountId === null) {
    const error = document.getElementById("error");
    error.textContent = "cannot read an account id from this address (" + window.location.pathname +
      "): a \"%\" in an id is written %25 in an address";
    error.hidden = false;
    return;
  }
  wireForms();
  refresh();
  window.setInterval(refresh, REFRESH_MS);
})();
