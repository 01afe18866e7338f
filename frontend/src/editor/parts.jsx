// The mapping helper's components (frontend/src/editor/mapping, testrun), imported through a
// glob so the editor still builds while one of them is missing; a plain fallback is used then.
const found = import.meta.glob(
  ['./mapping/MappingEditor.jsx', './mapping/SamplesPanel.jsx', './testrun/TestRunPanel.jsx'],
  { eager: true },
);

function FallbackExpression({ value, onChange, label }) {
  return (
    <div className="sf-field">
      <label>
        {label}
        <textarea className="sf-json" rows={6} value={value} onChange={(e) => onChange(e.target.value)} />
      </label>
    </div>
  );
}

function Unavailable() {
  return <p className="muted">Not available in this build.</p>;
}

export const MappingEditor = found['./mapping/MappingEditor.jsx']?.default ?? FallbackExpression;
export const SamplesPanel = found['./mapping/SamplesPanel.jsx']?.default ?? Unavailable;
export const TestRunPanel = found['./testrun/TestRunPanel.jsx']?.default ?? Unavailable;
