import { prettyJson } from '../format.js';

export default function JsonBlock({ label, value, tone }) {
  const empty = value === null || value === undefined;
  return (
    <figure className={`json-block${tone ? ` json-block-${tone}` : ''}`}>
      <figcaption>{label}</figcaption>
      {empty ? <p className="muted json-empty">none</p> : <pre tabIndex={0}>{prettyJson(value)}</pre>}
    </figure>
  );
}
