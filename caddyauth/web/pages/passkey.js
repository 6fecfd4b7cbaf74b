// caddy-jwt-allauth: the browser's side of the passkey ceremonies of the
// pages (see caddyauth/web/passkeypages.go). The page holds a hidden
// section #passkey with a form #passkey-form: data-begin is where the
// ceremony's options come from (a post with the page's CSRF token),
// data-ceremony is "create" (add a passkey) or "get" (sign in), and
// data-autofill names the field whose autofill offers passkeys
// (conditional mediation). The credential goes back in the form's own
// post, in its `credential` field, so the server answers it as it answers
// the page's other forms. Without WebAuthn the section stays hidden.
(function () {
	"use strict";
	var pk = window.PublicKeyCredential;
	var box = document.getElementById("passkey");
	var form = document.getElementById("passkey-form");
	if (!box || !form || !pk || !navigator.credentials ||
		typeof pk.parseCreationOptionsFromJSON !== "function" ||
		typeof pk.parseRequestOptionsFromJSON !== "function") {
		return;
	}
	var errorBox = document.getElementById("passkey-error");
	var button = document.getElementById("passkey-button");
	var autofill = null; // the AbortController of the pending autofill request
	box.hidden = false;

	function show(message) {
		errorBox.textContent = message;
		errorBox.hidden = !message;
	}

	function refused(message, name) {
		var err = new Error(message);
		err.name = name || "PasskeyRefused";
		return err;
	}

	// options asks the server for the ceremony's options; a refusal that
	// names a location (sign in again first) goes there.
	async function options() {
		var body = new URLSearchParams();
		body.set("csrf_token", form.elements.csrf_token.value);
		var res = await fetch(form.dataset.begin, {
			method: "POST",
			body: body,
			credentials: "same-origin",
			headers: { "Accept": "application/json" }
		});
		var data = await res.json().catch(function () { return {}; });
		if (res.ok && data.publicKey) {
			return data.publicKey;
		}
		if (data.location) {
			window.location.assign(data.location);
			throw refused("", "Redirect");
		}
		throw refused(data.detail || "Something went wrong. Reload the page and try again.");
	}

	// ceremony runs one ceremony and posts its credential with the form;
	// signal, when given, makes it the autofill request.
	async function ceremony(signal) {
		var json = await options();
		var cred;
		if (form.dataset.ceremony === "create") {
			cred = await navigator.credentials.create({ publicKey: pk.parseCreationOptionsFromJSON(json) });
		} else {
			var request = { publicKey: pk.parseRequestOptionsFromJSON(json) };
			if (signal) {
				request.mediation = "conditional";
				request.signal = signal;
			}
			cred = await navigator.credentials.get(request);
		}
		if (!cred) {
			throw refused("No passkey was chosen.");
		}
		form.elements.credential.value = JSON.stringify(cred.toJSON());
		button.disabled = true;
		form.submit();
	}

	// explain words a failed ceremony for the person at the page.
	function explain(err) {
		switch (err && err.name) {
		case "PasskeyRefused":
			return err.message;
		case "Redirect":
		case "AbortError":
			return "";
		case "NotAllowedError":
			return "The passkey request was cancelled or timed out. Try again, or sign in another way.";
		case "InvalidStateError":
			return "This device already holds a passkey for your account.";
		case "SecurityError":
			return "Passkeys cannot be used at this address.";
		case "TypeError":
			return "The server could not be reached. Try again.";
		}
		return "The passkey could not be used. Try again.";
	}

	form.addEventListener("submit", function (ev) {
		ev.preventDefault();
		if (autofill) {
			autofill.abort();
			autofill = null;
		}
		show("");
		button.disabled = true;
		ceremony(null).catch(function (err) {
			show(explain(err));
			button.disabled = false;
		});
	});

	var field = form.dataset.autofill && document.getElementById(form.dataset.autofill);
	if (field && typeof pk.isConditionalMediationAvailable === "function") {
		pk.isConditionalMediationAvailable().then(function (available) {
			if (!available) {
				return;
			}
			autofill = new AbortController();
			var signal = autofill.signal;
			// The autofill request starts with the page, before the
			// person did anything: whatever stops it (no passkey chosen,
			// none here, the start refused, e.g. throttled) is not worth
			// a word on a page they came to for the password form. The
			// button's own request says what went wrong.
			ceremony(signal).catch(function () {});
		});
	}
})();
