import Link from './Link.jsx';
import NotificationsBell from '../governance/NotificationsBell.jsx';
import './header.css';

const NAV = [
  { to: '/dashboard', label: 'Dashboard' },
  { to: '/flows', label: 'Flows' },
  { to: '/reviews', label: 'Reviews' },
  { to: '/runs', label: 'Runs' },
  { to: '/dead-letters', label: 'Dead letters' },
  { to: '/alerts', label: 'Alerts' },
  { to: '/connections', label: 'Connections' },
  { to: '/systems', label: 'Systems' },
  { to: '/map', label: 'Map' },
  { to: '/audit', label: 'Audit' },
  { to: '/admin', label: 'Admin', role: 'admin' }, // shown to admins only
];

export default function AppHeader({ path, user, onSignOut, signingOut }) {
  return (
    <header className="app-header">
      <div className="app-header-inner">
        <Link to="/flows" className="brand">
          <span className="brand-mark" aria-hidden="true" /> Flowgate
        </Link>
        <nav aria-label="Main">
          <ul>
            {NAV.filter((item) => !item.role || item.role === user.role).map((item) => {
              const current = path === item.to || path.startsWith(`${item.to}/`);
              return (
                <li key={item.to}>
                  <Link to={item.to} aria-current={current ? 'page' : undefined}>
                    {item.label}
                  </Link>
                </li>
              );
            })}
          </ul>
        </nav>
        <div className="user-box">
          <NotificationsBell />
          <span className="user-email" title="Signed in as">
            {user.email}
          </span>
          <span className="role-badge" title="Role">
            {user.role}
          </span>
          <button type="button" className="button button-ghost" onClick={onSignOut} disabled={signingOut}>
            Sign out
          </button>
        </div>
      </div>
    </header>
  );
}
