// The login page: the server checks the token and answers with a session cookie (HttpOnly, signed, expiring).
import { api } from "./api.js";

const form = document.getElementById("login-form");
const error = document.getElementById("login-error");

form.addEventListener("submit", async (event) => {
  event.preventDefault();
  error.hidden = true;
  try {
    await api("/dashboard/login", { method: "POST", body: { token: form.token.value } });
    const next = new URLSearchParams(location.search).get("next") || "";
    // Only paths inside the dashboard: never an open redirect.
    location.assign(next.startsWith("/dashboard/") ? next : "/dashboard/");
  } catch (err) {
    error.textContent = err.message;
    error.hidden = false;
    form.token.select();
  }
});
