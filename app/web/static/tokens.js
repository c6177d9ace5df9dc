// The gate-token page's copy buttons: copy a field's text to the clipboard. Without a clipboard (plain HTTP
// on another host) the text is selected instead, for Ctrl+C.
"use strict";

(function () {
  const status = document.querySelector("[data-copied]");

  function say(text) {
    if (status) status.textContent = text;
  }

  for (const button of document.querySelectorAll("button[data-copy]")) {
    button.addEventListener("click", async () => {
      const source = document.getElementById(button.dataset.copy);
      if (!source) return;
      const text = "value" in source ? source.value : source.textContent;
      try {
        await navigator.clipboard.writeText(text);
        say("Copied to the clipboard.");
      } catch {
        if ("select" in source) {
          source.select();
        } else {
          window.getSelection().selectAllChildren(source);
        }
        say("Selected: press Ctrl+C (⌘C) to copy.");
      }
    });
  }
})();
