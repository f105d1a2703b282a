import { describe, expect, it } from 'vitest';
import { contextMarkdown, renderExplanation } from '../src/contextView';

describe('context document', () => {
  it('shows the markdown the server rendered, as it is', () => {
    const markdown = '# Codeflow context for app.py:12\n\n1 snippets, 37 of 1024 tokens used.\n';
    expect(contextMarkdown({ snippets: [], dropped: [], budget: 1024, used: 37, markdown })).toBe(markdown);
  });

  it('refuses answers without a rendering', () => {
    // A server from before the `markdown` field, an error, nothing.
    expect(contextMarkdown({ snippets: [], dropped: [], budget: 1024, used: 0 })).toBeUndefined();
    expect(contextMarkdown({ markdown: '' })).toBeUndefined();
    expect(contextMarkdown({ markdown: 3 })).toBeUndefined();
    expect(contextMarkdown(null)).toBeUndefined();
  });

  it('renders explanations', () => {
    expect(renderExplanation('  Adds two numbers.\n', 'a.py:3')).toBe('# Codeflow: explanation of a.py:3\n\nAdds two numbers.\n');
  });
});
