// Which part of the typed question is cached: an estimate from the `warm` frames.
//
// The page does not see tokens. It remembers the text it sent at each `seq`; a warm frame for
// seq s covers that text's stable prefix (the server drops the last, still-typed word). When
// the context warm-up (seq 0, empty question) told us how many tokens the head takes, the
// share of the question's tokens that are cached scales the characters marked; the mark then
// ends at a word boundary so it never claims more than the cache holds.

const STABLE_END = new Set([".", ",", ";", ":", "!", "?", ")", "]", "}", '"', "'"]);
const SPACE = /\s/;

/** The text up to its last stable boundary (mirrors orchestrator/planner.py stable_prefix). */
export function stablePrefix(text) {
  if (!text) return "";
  const last = text[text.length - 1];
  if (SPACE.test(last) || STABLE_END.has(last)) return text.trimEnd();
  let end = text.length;
  while (end > 0 && !SPACE.test(text[end - 1])) end -= 1;
  return text.slice(0, end).trimEnd();
}

export function commonPrefixLength(a, b) {
  const limit = Math.min(a.length, b.length);
  let i = 0;
  while (i < limit && a[i] === b[i]) i += 1;
  return i;
}

/** `chars` moved back to the end of a word (a character before whitespace, or the text's end). */
function wordEnd(text, chars) {
  if (chars >= text.length) return text.length;
  let end = chars;
  while (end > 0 && !SPACE.test(text[end])) end -= 1;
  return text.slice(0, end).trimEnd().length;
}

export class CacheMap {
  constructor() {
    this.reset();
  }

  reset() {
    this.sent = new Map(); // seq → text sent with it
    this.headTokens = null; // prompt tokens with an empty question (from the seq-0 warm-up)
    this.cachedText = ""; // the question text believed cached
    this.cachedTokens = 0;
    this.promptTokens = 0;
  }

  remember(seq, text) {
    this.sent.set(seq, text);
    if (this.sent.size > 2000) this.sent.delete(this.sent.keys().next().value);
  }

  /** Take a `warm` frame into account. */
  onWarm(frame) {
    this.cachedTokens = frame.cached_tokens;
    this.promptTokens = frame.tokens;
    if (frame.seq === 0) {
      if (this.headTokens === null) this.headTokens = frame.tokens;
      this.cachedText = "";
      return;
    }
    const text = this.sent.get(frame.seq);
    if (text === undefined) return;
    const covered = frame.submit_ready ? text : stablePrefix(text);
    let chars = covered.length;
    if (this.headTokens !== null) {
      const sentQuestion = Math.max(1, frame.tokens - this.headTokens);
      const cachedQuestion = frame.cached_tokens - this.headTokens;
      const share = Math.min(1, Math.max(0, cachedQuestion / sentQuestion));
      chars = share >= 1 ? covered.length : wordEnd(covered, Math.floor(share * covered.length));
    }
    this.cachedText = covered.slice(0, chars);
  }

  /** Characters of `current` still covered by the cached text (an edit moves it back). */
  cachedChars(current) {
    return commonPrefixLength(this.cachedText, current);
  }
}
