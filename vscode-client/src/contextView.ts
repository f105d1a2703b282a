// The markdown shown for `codeflow.showContext` and `codeflow.explainFunction` results.
import * as path from 'node:path';

export interface ContextSnippet {
  path: string;
  start_line: number;
  end_line: number;
  text: string;
  reason: string;
  score: number;
}

export interface ContextResult {
  snippets: ContextSnippet[];
  dropped: unknown[];
  budget: number;
  used: number;
}

const FENCE_LANG: Record<string, string> = {
  '.py': 'python', '.js': 'javascript', '.ts': 'typescript', '.tsx': 'tsx', '.jsx': 'jsx',
  '.go': 'go', '.rs': 'rust', '.java': 'java', '.c': 'c', '.h': 'c', '.cpp': 'cpp', '.hpp': 'cpp',
};

function fence(text: string): string {
  let ticks = '```';
  while (text.includes(ticks)) {
    ticks += '`';
  }
  return ticks;
}

function describeDropped(item: unknown): string {
  if (typeof item === 'string') {
    return item;
  }
  if (item && typeof item === 'object') {
    const d = item as Record<string, unknown>;
    const where = d.path ? `${d.path}${d.start_line !== undefined ? `:${Number(d.start_line)}` : ''}` : '';
    return [where, d.reason].filter(Boolean).join(' — ') || JSON.stringify(item);
  }
  return String(item);
}

/** Markdown for the context the model would get at `where` (a `path:line` label). */
export function renderContext(result: ContextResult, where: string): string {
  const out = [`# Codeflow context for ${where}`, ''];
  out.push(`${result.snippets.length} snippets, ${result.used} of ${result.budget} tokens used.`, '');
  for (const s of result.snippets) {
    const lang = FENCE_LANG[path.extname(s.path)] ?? '';
    const f = fence(s.text);
    out.push(`## ${s.path}:${s.start_line}-${s.end_line}`);  // the server's lines are 1-based
    out.push(`${s.reason} (score ${s.score.toFixed(3)})`, '');
    out.push(`${f}${lang}`, s.text.replace(/\n$/, ''), f, '');
  }
  if (result.dropped.length) {
    out.push('## Dropped (over budget or filtered)', '');
    for (const d of result.dropped) {
      out.push(`- ${describeDropped(d)}`);
    }
    out.push('');
  }
  return out.join('\n');
}

/** Checks the shape of a `codeflow.showContext` answer. */
export function isContextResult(value: unknown): value is ContextResult {
  const v = value as ContextResult | null;
  return !!v && Array.isArray(v.snippets) && Array.isArray(v.dropped ?? []) && typeof v.budget === 'number';
}

/** Markdown for an explanation. */
export function renderExplanation(text: string, where: string): string {
  return `# Codeflow: explanation of ${where}\n\n${text.trim()}\n`;
}
