// The markdown shown for `codeflow.showContext` and `codeflow.explainFunction` results. The server
// renders the context view itself (`markdown` in its answer), so every editor shows the same one.

/** The server's rendering of a `codeflow.showContext` answer, or undefined for any other value. */
export function contextMarkdown(value: unknown): string | undefined {
  const markdown = (value as { markdown?: unknown } | null)?.markdown;
  return typeof markdown === 'string' && markdown !== '' ? markdown : undefined;
}

/** Markdown for an explanation. */
export function renderExplanation(text: string, where: string): string {
  return `# Codeflow: explanation of ${where}\n\n${text.trim()}\n`;
}
