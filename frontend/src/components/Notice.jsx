/** Flattens a problem's `errors` ({json: {ids: {0: ["Not a valid integer."]}}}) to lines. */
export function problemErrors(error) {
  const errors = error?.body?.errors;
  if (!errors || typeof errors !== 'object') return [];
  const lines = [];
  const walk = (value, path) => {
    if (Array.isArray(value) && value.every((v) => typeof v === 'string')) {
      lines.push(path.length ? `${path.join('.')}: ${value.join(' ')}` : value.join(' '));
    } else if (value && typeof value === 'object') {
      for (const [key, inner] of Object.entries(value)) walk(inner, key === '_schema' ? path : [...path, key]);
    } else if (value !== null && value !== undefined) {
      lines.push(path.length ? `${path.join('.')}: ${value}` : String(value));
    }
  };
  // The first level is where the bad value came from (json, query…): not worth showing.
  for (const inner of Object.values(errors)) walk(inner, []);
  return lines;
}

export function ErrorNotice({ error, onRetry, lead }) {
  if (!error) return null;
  const details = problemErrors(error);
  return (
    <div className="notice notice-error" role="alert">
      <div>
        {lead && <strong>{lead} </strong>}
        {error.title && error.detail && error.title !== error.detail ? (
          <>
            <strong>{error.title}.</strong> {error.detail}
          </>
        ) : (
          error.message
        )}
        {details.length > 0 && (
          <ul className="problem-errors">
            {details.map((line) => <li key={line}>{line}</li>)}
          </ul>
        )}
      </div>
      {onRetry && (
        <button type="button" className="button button-small" onClick={onRetry}>
          Try again
        </button>
      )}
    </div>
  );
}

export function Loading({ children = 'Loading…' }) {
  return (
    <p className="muted" role="status">
      {children}
    </p>
  );
}
