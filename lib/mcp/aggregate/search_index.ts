/**
 * Text ranking of tools for `search_tools` (README "Large catalogs"): Okapi BM25 over weighted
 * fields (BM25F-style: Robertson, Zaragoza & Taylor 2004, "Simple BM25 extension to multiple
 * weighted fields"). A tool is a document of four fields: its exposed name (weight 3), title (2),
 * description (1) and input parameter names (0.5). Terms come from {@linkcode tokenize}:
 * camelCase and snake_case split, lower-cased, stop words dropped, a light suffix stemmer.
 *
 * score(q, d) = Σ_t idf(t) · tf(t,d)·(k1 + 1) / (tf(t,d) + k1·(1 − b + b·|d|/avg|d|))
 * with idf(t) = ln(1 + (N − df(t) + 0.5) / (df(t) + 0.5)), tf and |d| weighted by field.
 */

/** BM25 term-frequency saturation. */
const K1 = 1.2;
/** BM25 length normalisation. */
const B = 0.75;

/** Field weights. */
const WEIGHTS = { name: 3, title: 2, description: 1, params: 0.5 } as const;

const STOP_WORDS = new Set(
  ("a an and any are as at be by for from has have in into is it its of on or that the this " +
    "to was were will with you your")
    .split(" "),
);

const VOWEL = /[aeiouy]/;

/**
 * A light English suffix stemmer (a small subset of Porter's rules), enough for tool texts:
 * plurals (`issues`, `branches`, `queries`), `-ing`, `-ed` and a final `-e`, so that `merge`,
 * `merged`, `merging` and `merges` meet. Short words are left alone.
 */
export function stem(word: string): string {
  let w = word;
  if (w.length > 4 && w.endsWith("ies")) w = w.slice(0, -3) + "y";
  else if (w.length > 4 && w.endsWith("sses")) w = w.slice(0, -2);
  else if (w.length > 4 && /(s|x|z|ch|sh)es$/.test(w)) w = w.slice(0, -2);
  else if (w.length > 3 && w.endsWith("s") && !/(ss|us|is)$/.test(w)) w = w.slice(0, -1);
  for (const suffix of ["ing", "ed"]) {
    const base = w.slice(0, -suffix.length);
    if (w.endsWith(suffix) && base.length >= 3 && VOWEL.test(base)) {
      w = /([^aeiouslz])\1$/.test(base) ? base.slice(0, -1) : base;
      break;
    }
  }
  if (w.length > 4 && w.endsWith("e")) w = w.slice(0, -1);
  return w;
}

/** The terms of a text: words split at case changes and non-alphanumerics, stemmed. */
export function tokenize(text: string): string[] {
  const spaced = text
    .replace(/([a-z0-9])([A-Z])/g, "$1 $2")
    .replace(/([A-Z]+)([A-Z][a-z])/g, "$1 $2")
    .toLowerCase();
  const out: string[] = [];
  for (const word of spaced.split(/[^a-z0-9]+/)) {
    if (word === "" || STOP_WORDS.has(word)) continue;
    out.push(stem(word));
  }
  return out;
}

/** What is searched of a tool. */
export interface SearchDoc {
  name: string;
  title?: string;
  description?: string;
  /** Names of its input parameters. */
  params?: string[];
}

/** A document reduced to weighted term frequencies and its weighted length. */
interface Terms {
  tf: Map<string, number>;
  length: number;
}

const termsOf = new WeakMap<object, Terms>();

function weigh(doc: SearchDoc): Terms {
  const tf = new Map<string, number>();
  let length = 0;
  const add = (text: string | undefined, weight: number) => {
    if (!text) return;
    for (const term of tokenize(text)) {
      tf.set(term, (tf.get(term) ?? 0) + weight);
      length += weight;
    }
  };
  add(doc.name, WEIGHTS.name);
  add(doc.title, WEIGHTS.title);
  add(doc.description, WEIGHTS.description);
  add(doc.params?.join(" "), WEIGHTS.params);
  return { tf, length };
}

/** One ranked hit. */
export interface Hit<T> {
  item: T;
  score: number;
}

/**
 * Ranks `items` for `query` and returns the best `limit` with a positive score, best first (ties
 * broken by name, so the order is deterministic). `docOf` describes an item; its term counts are
 * memoized per item object, so ranking the same catalog again only sums.
 */
export function rank<T extends object>(
  items: readonly T[],
  docOf: (item: T) => SearchDoc,
  query: string,
  limit: number,
): Hit<T>[] {
  const queryTerms = [...new Set(tokenize(query))];
  if (queryTerms.length === 0 || items.length === 0) return [];
  const docs = items.map((item) => {
    let terms = termsOf.get(item);
    if (!terms) {
      terms = weigh(docOf(item));
      termsOf.set(item, terms);
    }
    return terms;
  });
  const n = docs.length;
  const avgLength = docs.reduce((sum, d) => sum + d.length, 0) / n || 1;
  const idf = new Map<string, number>();
  for (const term of queryTerms) {
    let df = 0;
    for (const d of docs) if (d.tf.has(term)) df++;
    idf.set(term, Math.log(1 + (n - df + 0.5) / (df + 0.5)));
  }
  const hits: Hit<T>[] = [];
  docs.forEach((d, i) => {
    let score = 0;
    const norm = K1 * (1 - B + B * d.length / avgLength);
    for (const term of queryTerms) {
      const tf = d.tf.get(term);
      if (tf) score += idf.get(term)! * tf * (K1 + 1) / (tf + norm);
    }
    if (score > 0) hits.push({ item: items[i]!, score });
  });
  const names = new Map(hits.map((h) => [h.item, docOf(h.item).name]));
  hits.sort((a, b) => b.score - a.score || (names.get(a.item)! < names.get(b.item)! ? -1 : 1));
  return hits.slice(0, limit);
}
