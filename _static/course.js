// The course site's only script of its own (Jupyter Book adds every _static/*.js to pages).
//
// sphinx-book-theme 1.3 with pydata-sphinx-theme 0.17 renders two buttons with class
// .primary-toggle (and two .secondary-toggle): a hidden one in the top navbar and the
// visible one in the article header. Both themes bind their handlers to the FIRST one only
// (pydata-sphinx-theme issue #2451), so the visible buttons do nothing: on a phone the table
// of contents cannot be opened at all. Forward their clicks to the bound button, which opens
// the sidebar as a drawer on narrow screens and collapses it on wide ones. Remove this when
// the themes bind every toggle (tests/test_browser.py checks the phone drawer either way).
(function () {
  function forwardToggleClicks() {
    ["primary-toggle", "secondary-toggle"].forEach(function (kind) {
      var buttons = Array.prototype.slice.call(document.querySelectorAll("." + kind));
      var bound = buttons[0];
      buttons.slice(1).forEach(function (button) {
        button.addEventListener("click", function (event) {
          event.preventDefault();
          event.stopImmediatePropagation();
          bound.click();
        });
      });
    });
  }
  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", forwardToggleClicks);
  } else {
    forwardToggleClicks();
  }
})();
