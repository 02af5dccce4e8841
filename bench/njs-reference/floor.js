// bench:gateway reference point, not a product: the cheapest possible njs picker. A js_set that
// returns a constant upstream block, plus a log-phase js_set that does nothing: what njs itself
// (a VM per request, two handler calls) costs inside nginx, with none of our code loaded.

function pick() {
  return 'reference_0';
}

function outcome() {
  return '';
}

export default { pick, outcome };
