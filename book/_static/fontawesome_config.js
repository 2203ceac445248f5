// Loaded on every page before the theme's (deferred) Font Awesome script.
// Font Awesome's mutation observer swaps every <i class="fa ..."> the page creates for an <svg>,
// including the icons of ipywidgets' Play control, whose view then loses track of its own icons and
// stops updating. Icons already in the HTML are still converted once at load.
window.FontAwesomeConfig = Object.assign(window.FontAwesomeConfig || {}, { observeMutations: false });
