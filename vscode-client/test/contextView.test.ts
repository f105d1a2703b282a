import { describe, expect, it } from 'vitest';
import { isContextResult, renderContext, renderExplanation } from '../src/contextView';

describe('context document', () => {
  const result = {
    snippets: [
      { path: 'app/models.py', start_line: 9, end_line: 11, text: 'class User:\n    name: str\n', reason: 'imported symbol User', score: 0.91234 },
      { path: 'README', start_line: 1, end_line: 1, text: 'has ``` fences', reason: 'recent file', score: 0.1 },
    ],
    dropped: [{ path: 'app/big.py', start_line: 4, reason: 'over budget' }, 'secrets.env (secret)'],
    budget: 1024,
    used: 37,
  };

  it('lists snippets with the server\'s 1-based lines as they are, reasons, scores and fenced code', () => {
    const md = renderContext(result, 'app/views.py:12');
    expect(md).toContain('# Codeflow context for app/views.py:12');
    expect(md).toContain('2 snippets, 37 of 1024 tokens used.');
    expect(md).toContain('## app/models.py:9-11');  // not shifted again (issue 13)
    expect(md).toContain('imported symbol User (score 0.912)');
    expect(md).toContain('```python\nclass User:\n    name: str\n```');
    // A snippet containing a fence gets a longer one.
    expect(md).toContain('````\nhas ``` fences\n````');
    expect(md).toContain('- app/big.py:4 — over budget');
    expect(md).toContain('- secrets.env (secret)');
  });

  it('recognises results and explanations', () => {
    expect(isContextResult(result)).toBe(true);
    expect(isContextResult({ snippets: 'x', budget: 1 })).toBe(false);
    expect(isContextResult(null)).toBe(false);
    expect(renderExplanation('  Adds two numbers.\n', 'a.py:3')).toBe('# Codeflow: explanation of a.py:3\n\nAdds two numbers.\n');
  });
});
