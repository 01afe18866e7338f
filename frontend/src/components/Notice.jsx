export function ErrorNotice({ error, onRetry }) {
  if (!error) return null;
  return (
    <div className="notice notice-error" role="alert">
      <div>
        {error.title && error.detail && error.title !== error.detail ? (
          <>
            <strong>{error.title}.</strong> {error.detail}
          </>
        ) : (
          error.message
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
