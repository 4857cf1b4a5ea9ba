// The course's own script, added to every page (_config.yml: html_js_files).
//
// Plotly draws its figures as SVG inside a <div>, which has no alt text as an <img> has:
// once plotly has drawn a figure, the figure gets the role of an image and the figure's
// own title as its accessible name, for screen readers and for the figure tags of the
// course's PDF (scripts/build_pdf.py; tests/test_pdf.py counts them).
"use strict";

function figureTitle(figure) {
  const title = figure.layout && figure.layout.title;
  const text = typeof title === "string" ? title : title && title.text;
  return text ? text.replace(/<[^>]*>/g, " ").replace(/\s+/g, " ").trim() : "";
}

function labelPlotlyFigures() {
  for (const figure of document.querySelectorAll(".plotly-graph-div:not([aria-label])")) {
    if (!figure.querySelector("svg.main-svg")) continue; // not drawn (yet)
    const title = figureTitle(figure);
    figure.setAttribute("role", "img");
    figure.setAttribute("aria-label", title ? `Figure: ${title}` : "Figure (an interactive plotly chart)");
  }
}

new MutationObserver(labelPlotlyFigures).observe(document.documentElement, { childList: true, subtree: true });
