// vidtag report: label filter, sorting and the inline player. Plain DOM code, no network, no framework.
(function () {
  "use strict";
  var filter = document.getElementById("filter");
  var sort = document.getElementById("sort");
  var count = document.getElementById("count");
  var main = document.getElementById("videos");

  // each element's labels, lower-cased, parsed once
  var parsed = new WeakMap();
  function labelsOf(el) {
    var labels = parsed.get(el);
    if (!labels) {
      try { labels = JSON.parse(el.getAttribute("data-labels") || "[]"); } catch (e) { labels = []; }
      labels = labels.map(function (l) { return String(l).toLowerCase(); });
      parsed.set(el, labels);
    }
    return labels;
  }

  // "dog" finds every label containing dog; "\"hot dog\"" (in quotes) only that label
  function matcher(text) {
    var q = text.trim().toLowerCase();
    var exact = q.length > 1 && q.charAt(0) === '"' && q.charAt(q.length - 1) === '"';
    if (exact) { q = q.slice(1, -1); }
    if (!q) { return null; }
    return function (labels) {
      return labels.some(function (l) { return exact ? l === q : l.indexOf(q) >= 0; });
    };
  }

  function apply() {
    var match = matcher(filter.value);
    var items = document.querySelectorAll("[data-filter-item]");
    var shown = 0;
    Array.prototype.forEach.call(items, function (item) {
      var ok = !match || match(labelsOf(item));
      if (item.hidden !== !ok) { item.hidden = !ok; }
      if (ok) { shown += 1; }
      // inside a shown video, only the shots and timeline rows that carry the label
      Array.prototype.forEach.call(item.querySelectorAll(".shot, .row"), function (part) {
        var hide = Boolean(match) && !match(labelsOf(part));
        if (part.hidden !== hide) { part.hidden = hide; }
      });
    });
    if (count) {
      count.textContent = shown + " of " + items.length + " " + (count.getAttribute("data-what") || "");
    }
    var hash = filter.value ? "#q=" + encodeURIComponent(filter.value) : "";
    try { history.replaceState(null, "", hash || location.pathname + location.search); } catch (e) { /* file: */ }
    // links to other pages keep the filter
    Array.prototype.forEach.call(document.querySelectorAll("a[data-keep-query]"), function (a) {
      var base = a.getAttribute("href").split("#")[0];
      a.setAttribute("href", base + hash);
    });
  }

  function number(el, key) {
    var v = parseFloat(el.getAttribute("data-" + key));
    return isNaN(v) ? -Infinity : v;
  }

  function sortVideos(key) {
    if (!main) { return; }
    var cards = Array.prototype.slice.call(main.querySelectorAll(".video"));
    cards.sort(function (a, b) {
      if (key === "path") { return a.getAttribute("data-path").localeCompare(b.getAttribute("data-path")); }
      if (key === "order") { return number(a, "index") - number(b, "index"); }
      return number(b, key) - number(a, key) || number(a, "index") - number(b, "index");
    });
    cards.forEach(function (card) { main.appendChild(card); });
  }

  // with a WebVTT sidecar: play the video here from the clicked time, its labels as subtitles
  function play(card, start) {
    var box = card.querySelector(".player");
    box.textContent = "";
    var video = document.createElement("video");
    video.controls = true;
    video.preload = "auto";
    var track = document.createElement("track");
    track.kind = "subtitles";
    track.label = "labels";
    track.srclang = "en";
    track.default = true;
    track.src = "data:text/vtt;charset=utf-8," + encodeURIComponent(card.getAttribute("data-vtt"));
    video.appendChild(track);
    video.addEventListener("loadedmetadata", function () {
      video.currentTime = start;
      var started = video.play();
      if (started && started.catch) { started.catch(function () { /* the user presses play */ }); }
    }, { once: true });
    video.src = card.getAttribute("data-src");
    box.appendChild(video);
    box.hidden = false;
  }

  document.addEventListener("click", function (ev) {
    var target = ev.target;
    var chip = target.closest && target.closest(".chip[data-query]");
    if (chip) {
      filter.value = '"' + chip.getAttribute("data-query") + '"';
      apply();
      return;
    }
    var spot = target.closest && (target.closest(".shot") || target.closest(".span"));
    var card = spot && spot.closest(".video");
    if (!card || !card.hasAttribute("data-vtt")) { return; }  // the thumbnail's link opens the video
    ev.preventDefault();
    play(card, parseFloat(spot.getAttribute("data-start")) || 0);
  });

  if (filter) {
    var m = /^#q=(.*)$/.exec(location.hash);
    if (m) { try { filter.value = decodeURIComponent(m[1]); } catch (e) { /* a bad hash */ } }
    filter.addEventListener("input", apply);
    apply();
  }
  if (sort) {
    sort.addEventListener("change", function () { sortVideos(sort.value); });
  }
}());
