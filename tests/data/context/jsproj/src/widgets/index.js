// Builds a widget.
export function makeWidget(name) {
  return { name };
}

export const DEFAULT_SIZE = 3;
