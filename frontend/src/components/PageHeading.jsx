import { useEffect, useRef } from 'react';

/** The page's <h1>; it takes focus when the page opens so screen readers announce it. */
export default function PageHeading({ title, children }) {
  const ref = useRef(null);
  useEffect(() => {
    document.title = `${title} · Flowgate`;
    ref.current?.focus({ preventScroll: true });
  }, [title]);
  return (
    <div className="page-heading">
      <h1 ref={ref} tabIndex={-1}>
        {title}
      </h1>
      {children && <div className="page-actions">{children}</div>}
    </div>
  );
}
