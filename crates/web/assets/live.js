// Mission Control's dashboard: live updates, no build step.
//
// 1. The page follows the event log (/api/v1/events/stream). When an event arrives, it fetches
//    itself again and swaps each live region (an element with data-live="NAME") for the same
//    region of the fresh copy — except a region where a form is being filled in, which is left
//    alone until the next event. Events that arrive while a fetch runs are folded into one more.
// 2. A ticket page follows its run's log (data-log-stream), appending what the run writes; the
//    stream's ids are byte offsets, so a reconnecting stream goes on where it was.
(function () {
  "use strict";

  var timer = null;
  var fetching = false;
  var again = false;

  function editing(region) {
    var active = document.activeElement;
    if (active && active !== document.body && region.contains(active) &&
        /^(TEXTAREA|INPUT|SELECT)$/.test(active.tagName)) {
      return true;
    }
    var fields = region.querySelectorAll("textarea, input[type=text], input:not([type])");
    for (var i = 0; i < fields.length; i++) {
      if (fields[i].value !== fields[i].defaultValue) {
        return true;
      }
    }
    return false;
  }

  function refresh() {
    fetching = true;
    fetch(window.location.href, { credentials: "same-origin", cache: "no-store" })
      .then(function (response) {
        if (!response.ok) {
          throw new Error("status " + response.status);
        }
        return response.text();
      })
      .then(function (html) {
        var fresh = new DOMParser().parseFromString(html, "text/html");
        var regions = document.querySelectorAll("[data-live]");
        for (var i = 0; i < regions.length; i++) {
          var region = regions[i];
          var name = region.getAttribute("data-live");
          var replacement = fresh.querySelector('[data-live="' + name + '"]');
          if (replacement && !editing(region)) {
            region.replaceWith(document.importNode(replacement, true));
          }
        }
        document.body.setAttribute("data-refreshed", String(Date.now()));
      })
      .catch(function () {
        // The next event tries again.
      })
      .then(function () {
        fetching = false;
        if (again) {
          again = false;
          schedule();
        }
      });
  }

  function schedule() {
    if (fetching) {
      again = true;
      return;
    }
    if (timer === null) {
      timer = window.setTimeout(function () {
        timer = null;
        refresh();
      }, 200);
    }
  }

  if (window.EventSource && document.querySelector("[data-live]")) {
    var events = new EventSource("/api/v1/events/stream");
    events.onmessage = schedule;
    events.onopen = function () {
      document.body.setAttribute("data-live-connected", "true");
    };
  }

  var log = document.querySelector("[data-log-stream]");
  if (window.EventSource && log) {
    var stream = new EventSource(
      log.getAttribute("data-log-stream") + "?from=" + log.getAttribute("data-log-from"));
    stream.onmessage = function (event) {
      var piece = JSON.parse(event.data);
      var atBottom = log.scrollTop + log.clientHeight >= log.scrollHeight - 4;
      log.appendChild(document.createTextNode(piece.text));
      if (atBottom) {
        log.scrollTop = log.scrollHeight;
      }
    };
    stream.addEventListener("end", function () {
      stream.close();
      log.classList.add("ended");
    });
  }
})();
