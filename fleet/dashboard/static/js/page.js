// What every dashboard page shares: the log-out button and the live refresh loop.
import { api } from "./api.js";

// Calls render() now and again `intervalMs` after each run ends (never two at once); the header shows
// whether the last refresh worked. Returns a function that refreshes immediately (after an action).
export function startPage(render, intervalMs = 1500) {
  const live = document.getElementById("live");
  document.getElementById("logout")?.addEventListener("click", async () => {
    await api("/dashboard/logout", { method: "POST" }).catch(() => {});
    location.assign("/dashboard/login");
  });
  let timer = null;
  let running = null;
  async function tick() {
    clearTimeout(timer);
    try {
      await render();
      live.textContent = `live · ${new Date().toLocaleTimeString()}`;
      live.className = "live ok";
    } catch (err) {
      live.textContent = `update failed: ${err.message}`;
      live.className = "live failed";
      console.error(err);
    }
    timer = setTimeout(refresh, intervalMs);
  }
  function refresh() {
    running = running || tick().finally(() => { running = null; });
    return running;
  }
  refresh();
  return refresh;
}
