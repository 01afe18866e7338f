/** A tiny inline SVG bar chart: runs per bucket, failed runs stacked in red. */
export default function Sparkline({ runs, failed, label, width = 168, height = 34 }) {
  const max = Math.max(1, ...runs);
  const n = runs.length || 1;
  const bar = width / n;
  const total = runs.reduce((a, b) => a + b, 0);
  const failures = failed.reduce((a, b) => a + b, 0);
  return (
    <svg className="sparkline" width={width} height={height} viewBox={`0 0 ${width} ${height}`} role="img"
      aria-label={`${label}: ${total} runs, ${failures} failed`}>
      <line x1="0" y1={height - 0.5} x2={width} y2={height - 0.5} className="sparkline-axis" />
      {runs.map((count, i) => {
        if (!count) return null;
        const h = Math.max(1.5, (count / max) * (height - 2));
        const fh = failed[i] ? Math.max(1.5, (failed[i] / max) * (height - 2)) : 0;
        const x = i * bar + 0.5;
        const w = Math.max(1, bar - 1);
        return (
          <g key={i}>
            <rect x={x} y={height - h} width={w} height={h} className="sparkline-runs" />
            {fh > 0 && <rect x={x} y={height - fh} width={w} height={fh} className="sparkline-failed" />}
          </g>
        );
      })}
    </svg>
  );
}
