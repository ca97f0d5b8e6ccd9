// A webpack loader for test/support/earlier-version.ts: every `patched('<id>')` of the source answers false.
module.exports = function unpatch(source) {
  const { patchId } = this.getOptions();
  return source.split(`patched('${patchId}')`).join('false');
};
