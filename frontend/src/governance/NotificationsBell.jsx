// The header's notifications: unread count, a list, mark as read (polls every 30 s).
import { useCallback, useEffect, useState } from 'react';
import { navigate } from '../router.js';
import { gov } from './govApi.js';
import './governance.css';

const POLL_MS = 30000;

export default function NotificationsBell() {
  const [data, setData] = useState({ items: [], unread: 0 });
  const [open, setOpen] = useState(false);

  const load = useCallback(() => {
    gov.notifications().then(setData, () => {});
  }, []);

  useEffect(() => {
    load();
    const timer = setInterval(load, POLL_MS);
    return () => clearInterval(timer);
  }, [load]);

  async function openItem(item) {
    if (!item.read_at) await gov.readNotification(item.id).catch(() => {});
    setOpen(false);
    load();
    if (item.link) navigate(item.link);
  }

  return (
    <div className="gov-bell">
      <button type="button" className="button button-ghost" aria-expanded={open}
        aria-label={`Notifications, ${data.unread} unread`} onClick={() => {
          setOpen(!open);
          if (!open) load();
        }}>
        <svg width="16" height="16" viewBox="0 0 24 24" aria-hidden="true" fill="none" stroke="currentColor"
          strokeWidth="2" strokeLinecap="round" strokeLinejoin="round">
          <path d="M18 8a6 6 0 0 0-12 0c0 7-3 9-3 9h18s-3-2-3-9" />
          <path d="M13.7 21a2 2 0 0 1-3.4 0" />
        </svg>
        {data.unread > 0 && <span className="gov-bell-count" aria-hidden="true">{data.unread}</span>}
      </button>
      {open && (
        <div className="gov-bell-panel" role="region" aria-label="Notifications">
          {data.items.length === 0 ? (
            <p className="gov-muted">No notifications.</p>
          ) : (
            <ul>
              {data.items.map((n) => (
                <li key={n.id} className={n.read_at ? undefined : 'unread'}>
                  <button type="button" className="button button-ghost" onClick={() => openItem(n)}>{n.title}</button>
                  <div className="gov-muted">{new Date(n.created_at).toLocaleString()}</div>
                </li>
              ))}
            </ul>
          )}
          {data.unread > 0 && (
            <button type="button" className="button button-small" onClick={() => gov.readAll().then(load, () => {})}>
              Mark all as read
            </button>
          )}
        </div>
      )}
    </div>
  );
}
