package otpcode

import (
	"fmt"
	"image/color"
	"strconv"
	"strings"

	"github.com/boombuler/barcode/qr"
)

// qrQuietZone is the light border around a QR code, in modules (ISO/IEC
// 18004 asks for four).
const qrQuietZone = 4

// qrModulePixels is the rendered size of one module in the SVG's width and
// height; the viewBox is in modules, so the image scales cleanly.
const qrModulePixels = 5

// QRSVG returns content as a QR code (error correction level M) drawn as an
// SVG document: a white background and one black path made of one
// rectangle per horizontal run of dark modules.
func QRSVG(content string) (string, error) {
	code, err := qr.Encode(content, qr.M, qr.Auto)
	if err != nil {
		return "", fmt.Errorf("encoding QR code: %w", err)
	}
	bounds := code.Bounds()
	n := bounds.Dx()
	size := n + 2*qrQuietZone
	sizeText := strconv.Itoa(size)
	pixels := strconv.Itoa(size * qrModulePixels)

	var d strings.Builder
	for y := range n {
		for x := 0; x < n; {
			if !isDark(code.At(bounds.Min.X+x, bounds.Min.Y+y)) {
				x++
				continue
			}
			run := 1
			for x+run < n && isDark(code.At(bounds.Min.X+x+run, bounds.Min.Y+y)) {
				run++
			}
			fmt.Fprintf(&d, "M%d %dh%dv1h-%dz", x+qrQuietZone, y+qrQuietZone, run, run)
			x += run
		}
	}

	var b strings.Builder
	b.WriteString(`<svg xmlns="http://www.w3.org/2000/svg" width="` + pixels + `" height="` + pixels +
		`" viewBox="0 0 ` + sizeText + ` ` + sizeText + `" shape-rendering="crispEdges">`)
	b.WriteString(`<rect width="` + sizeText + `" height="` + sizeText + `" fill="#fff"/>`)
	b.WriteString(`<path fill="#000" d="` + d.String() + `"/>`)
	b.WriteString(`</svg>`)
	return b.String(), nil
}

func isDark(c color.Color) bool {
	r, g, b, _ := c.RGBA()
	return r+g+b < 3*0x8000
}
