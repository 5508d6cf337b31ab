// The fleet's JSON API as the dashboard uses it: the HttpOnly cookie carries a session id, and the custom
// header marks state-changing calls as coming from the dashboard (the server's CSRF check).

export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

export async function api(path, { method = "GET", body } = {}) {
  const init = { method, credentials: "same-origin", headers: { "X-EdgeML-Dashboard": "1" } };
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const resp = await fetch(path, init);
  const data = (resp.headers.get("content-type") || "").includes("json") ? await resp.json() : null;
  if (resp.status === 401 && !path.endsWith("/login")) {
    toLogin();
  }
  if (!resp.ok) {
    throw new ApiError(resp.status, (data && data.error) || `${resp.status} ${resp.statusText}`);
  }
  return data;
}

// An endpoint that may not exist on this fleet (404): its fallback instead of an error.
export async function optional(path, fallback) {
  try {
    return await api(path);
  } catch (err) {
    if (err.status === 404) return fallback;
    throw err;
  }
}

export function toLogin() {
  const next = location.pathname + location.search;
  location.assign(`/dashboard/login?next=${encodeURIComponent(next)}`);
}
