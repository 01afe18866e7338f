import { STEP_HELP, STEP_LABEL } from './model.js';

export const DND_TYPE = 'application/x-flowgate-node';

/** Palette items from the flow schema's step types and the connector catalogue. */
export function paletteItems(types, connectors) {
  const triggers = connectors
    .filter((c) => c.kind === 'trigger')
    .map((c) => ({ kind: 'trigger', connector: c.key, label: c.name, help: c.description }));
  const steps = types
    .filter((t) => t !== 'deliver')
    .map((t) => ({ kind: 'step', type: t, label: STEP_LABEL[t] ?? t, help: STEP_HELP[t] ?? '' }));
  const destinations = types.includes('deliver')
    ? connectors
        .filter((c) => c.kind === 'destination')
        .map((c) => ({ kind: 'step', type: 'deliver', connector: c.key, label: c.name, help: c.description }))
    : [];
  return { triggers, steps, destinations };
}

function Item({ item, disabled, disabledReason, onAdd }) {
  return (
    <li>
      <button
        type="button"
        className={`palette-item palette-${item.kind === 'trigger' ? 'trigger' : item.type}`}
        draggable={!disabled}
        disabled={disabled}
        title={disabled ? disabledReason : `${item.help} Drag onto the canvas, or press to add.`}
        aria-label={`Add ${item.label}`}
        data-palette={item.connector ?? item.type}
        onDragStart={(e) => {
          e.dataTransfer.setData(DND_TYPE, JSON.stringify(item));
          e.dataTransfer.effectAllowed = 'move';
        }}
        onClick={() => onAdd(item)}
      >
        <span className="palette-label">{item.label}</span>
        <span className="palette-help">{item.help}</span>
      </button>
    </li>
  );
}

export default function Palette({ types, connectors, hasTrigger, onAdd }) {
  const { triggers, steps, destinations } = paletteItems(types, connectors);
  return (
    <aside className="palette" aria-label="Palette">
      <h2 className="palette-title">Palette</h2>
      <p className="palette-tip">Drag onto the canvas, or select and press Enter.</p>
      <section aria-labelledby="pal-triggers">
        <h3 id="pal-triggers">Trigger</h3>
        <ul>
          {triggers.map((item) => (
            <Item key={item.connector} item={item} onAdd={onAdd} disabled={hasTrigger}
              disabledReason="A flow has one trigger: change its type in the inspector." />
          ))}
        </ul>
      </section>
      <section aria-labelledby="pal-steps">
        <h3 id="pal-steps">Steps</h3>
        <ul>
          {steps.map((item) => <Item key={item.type} item={item} onAdd={onAdd} />)}
        </ul>
      </section>
      <section aria-labelledby="pal-dest">
        <h3 id="pal-dest">Destinations</h3>
        <ul>
          {destinations.map((item) => <Item key={item.connector} item={item} onAdd={onAdd} />)}
        </ul>
      </section>
    </aside>
  );
}
