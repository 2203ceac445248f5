// Loaded on widget pages between require.js and the ipywidgets embed manager (embed-amd.js); all paths
// are computed from this file's own URL (it lives in _static/), so they hold at any page depth and
// under any base path.
(function () {
  var self = document.currentScript;
  if (!self || !self.src) { return; }
  var vendor = new URL("vendor/", self.src).href;

  // 1. Module paths. The manager's bundled AMD modules (@jupyter-widgets/base, controls,
  //    html-manager/dist/libembed-amd) locate their font files relative to their own module URL, which
  //    require.js resolves against the page's folder unless told otherwise: map them to the vendored
  //    copy, where the fonts sit beside embed-amd.js.
  window.requirejs.config({
    paths: {
      "@jupyter-widgets/html-manager/dist": vendor + "html-manager",
      "@jupyter-widgets": vendor + "html-manager"
    }
  });

  // 2. Fallback module loader. The manager reads the base URL from which it fetches widget modules it
  //    does not bundle from the `data-jupyter-widgets-cdn` attribute of any <script> tag (default: a
  //    public CDN). This tag carries it, pointing at _static/vendor/npm/ (laid out like the CDN:
  //    <package>@<version>/dist/<file>.js), so such a module is looked for on the book's own host.
  self.setAttribute("data-jupyter-widgets-cdn", vendor + "npm/");

  // 3. MathJax. The manager typesets widget labels through the MathJax 2 API (MathJax.Hub.Queue); the
  //    book loads MathJax 3, which has no Hub. Provide that one call on top of MathJax 3. Installed at
  //    DOMContentLoaded, after the deferred MathJax script has run and before the widgets render.
  document.addEventListener("DOMContentLoaded", function () {
    var mathjax = window.MathJax;
    if (!mathjax || mathjax.Hub) { return; }
    mathjax.Hub = {
      Queue: function (command) {
        var element = command && command[2];
        var mj = window.MathJax;
        if (!element || !mj || typeof mj.typesetPromise !== "function") { return; }
        var ready = (mj.startup && mj.startup.promise) || Promise.resolve();
        ready.then(function () { return mj.typesetPromise([element]); }).catch(function (err) {
          console.warn("MathJax could not typeset a widget label:", err);
        });
      }
    };
  });
})();
