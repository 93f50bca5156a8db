import { globMatches } from '@fleet/core';

const NONE: readonly number[] = [];
const META = /[*?[\\]/;

/** A node of the prefix trie: globs whose literal prefix ends here, and children by char code. */
interface TrieNode {
  globs: number[] | undefined;
  next: Map<number, TrieNode> | undefined;
}

/**
 * The wildcard Conflicts/Replaces globs of a decision, numbered, with a way to
 * find the ones matching a unit name without testing every glob against it.
 *
 * Why: testing every glob against every name is units × globs regex runs (tens
 * of millions for 100,000 units). Real globs almost always start with a literal
 * prefix (`apache.*.service`), so globs hang in a trie under that prefix and a
 * name walks the trie along its own characters, testing only the globs whose
 * prefix it starts with; a name no prefix begins with stops after one step.
 * Globs that start with a metacharacter (`*-canary.service`) sit at the root
 * and are tested against every name; they are rare.
 */
export class GlobIndex {
  /** Glob text by id. */
  readonly globs: string[] = [];
  private readonly ids = new Map<string, number>();
  private readonly root: TrieNode = { globs: undefined, next: undefined };
  /**
   * For globs whose only metacharacter is one `*` (nearly all real ones), the
   * suffix after it: such a glob is matched by string comparison, sparing a
   * regex compile per distinct glob. Undefined for other globs.
   */
  private readonly starSuffix: (string | undefined)[] = [];
  private readonly prefixLength: number[] = [];

  get size(): number {
    return this.globs.length;
  }

  /** The id of `glob`, adding it if new. */
  idOf(glob: string): number {
    let id = this.ids.get(glob);
    if (id !== undefined) return id;
    id = this.globs.length;
    this.globs.push(glob);
    this.ids.set(glob, id);
    const cut = glob.search(META);
    const prefixLength = cut === -1 ? glob.length : cut;
    const rest = glob.slice(prefixLength + 1);
    this.starSuffix.push(glob[prefixLength] === '*' && !META.test(rest) ? rest : undefined);
    this.prefixLength.push(prefixLength);
    let node = this.root;
    for (let i = 0; i < prefixLength; i++) {
      const c = glob.charCodeAt(i);
      node.next ??= new Map();
      let child = node.next.get(c);
      if (child === undefined) {
        child = { globs: undefined, next: undefined };
        node.next.set(c, child);
      }
      node = child;
    }
    (node.globs ??= []).push(id);
    return id;
  }

  /** Ids of the globs that match `name` (a shared empty array when none do). */
  matching(name: string): readonly number[] {
    let out: number[] | undefined;
    let node: TrieNode | undefined = this.root;
    for (let i = 0; node !== undefined; i++) {
      if (node.globs !== undefined) {
        // Every glob here has a literal prefix that `name` starts with.
        for (const id of node.globs) if (this.matches(id, name)) (out ??= []).push(id);
      }
      if (i === name.length) break;
      node = node.next?.get(name.charCodeAt(i));
    }
    return out ?? NONE;
  }

  private matches(id: number, name: string): boolean {
    const suffix = this.starSuffix[id];
    if (suffix === undefined) return globMatches(this.globs[id]!, name);
    return name.length >= this.prefixLength[id]! + suffix.length && name.endsWith(suffix);
  }
}
