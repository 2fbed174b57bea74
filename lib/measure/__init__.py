"""Measurements and theory, for any recurrence step(s, x) (they know no network by name beyond
the activation a theory applies to): the log-domain gradient profile and its fitted decay rate
(`gradients`), mean-field predictions (`theory`), and the fields a decay sweep records from
both (`decay`)."""
