package proxy

// The event loops' part of error pages (see errorPage).

// failed ends a request whose plan failed: the error backend answers
// when the core says so (exchange.Intercept), else the proxy does.
func (c *evClient) failed() {
	if c.x.Intercept(c.x.Status) {
		c.try()
		return
	}
	c.answer()
}

// intercepted reports whether u's response head, just accepted, is not
// the client's: the core sent the request to the error backend instead.
// u is closed, its body unread, and the new plan carried out.
func (u *evUp) intercepted() bool {
	c := u.c
	if !c.x.Intercept(u.res.Status) {
		return false
	}
	c.l.closeUp(u)
	c.up = nil
	c.try()
	return true
}
