// Live worklist: when the desk says a worklist may have changed, fetch the
// list again and put it in place. No inline code: the page's
// Content-Security-Policy allows only this file.
"use strict";

document.addEventListener("DOMContentLoaded", () => {
  const section = document.getElementById("worklist");
  if (!section || !window.EventSource) {
    return;
  }
  let fetching = false;
  let again = false;
  const refresh = async () => {
    if (fetching) {
      again = true;
      return;
    }
    fetching = true;
    try {
      const response = await fetch(section.dataset.list, {
        credentials: "same-origin",
        headers: { "accept": "text/html" },
      });
      if (response.redirected) {
        // The session ended: the list was answered with the sign-in page.
        window.location.assign("/signin");
      } else if (response.ok) {
        section.innerHTML = await response.text();
      }
    } finally {
      fetching = false;
      if (again) {
        again = false;
        refresh();
      }
    }
  };
  const events = new EventSource(section.dataset.live);
  events.addEventListener("worklist", refresh);
  // After a dropped connection the browser reconnects by itself; whatever
  // changed meanwhile is fetched once it is back.
  events.addEventListener("open", refresh);
});
